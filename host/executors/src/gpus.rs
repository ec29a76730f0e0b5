//! Finding a node's GPUs through NVML (`nvml-wrapper`, which loads the driver's
//! `libnvidia-ml.so` when called): a machine without the NVIDIA driver simply has
//! none. `jobhost serve --gpus FILE` declares them instead (a machine whose devices
//! NVML cannot see, or a test), and then NVML is not asked.

use jobhost_model::{Gpu, gpu_type_from_name};

/// The GPUs NVML sees, with their type from their name; none when the driver's
/// library is missing or does not answer (said in the log).
pub fn discover() -> Vec<Gpu> {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            tracing::debug!(error = %e, "no NVIDIA driver: this node has no GPUs");
            return Vec::new();
        }
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "NVML answered but could not count its GPUs");
            return Vec::new();
        }
    };
    let mut gpus = Vec::new();
    for i in 0..count {
        let device = match nvml.device_by_index(i) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(index = i, error = %e, "NVML could not open a GPU; leaving it out");
                continue;
            }
        };
        gpus.push(Gpu {
            index: device.index().unwrap_or(i),
            uuid: device.uuid().unwrap_or_default(),
            gpu_type: gpu_type_from_name(&device.name().unwrap_or_default()),
            memory_mb: device.memory_info().map_or(0, |m| m.total >> 20),
        });
    }
    gpus
}
