//! GPUs: what a node has ([`Gpu`], found through NVML or declared with `--gpus FILE`),
//! what its running jobs hold ([`GpuUsage`]), and the one rule that picks a job's
//! devices ([`choose_devices`]), shared by both store backends so a claim assigns the
//! same devices whichever database records it.
//!
//! A job asks for `gpus: N` and optionally `gpu_type`; it gets N specific device
//! indices of the node that claims it, never held by another of that node's live
//! jobs, recorded on the job as `gpu_devices` and released when it ends (a device is
//! held exactly while a `starting` or `running` job lists it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most GPUs a job may ask for.
pub const MAX_GPUS: u32 = 64;

/// One GPU of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// The device index the driver knows it by (what `NVIDIA_VISIBLE_DEVICES` takes).
    pub index: u32,
    /// The driver's unique id (`GPU-…`).
    #[serde(default)]
    pub uuid: String,
    /// What jobs ask for in `gpu_type`: `h100`, `a100`, `rtx-4090`.
    #[serde(rename = "type")]
    pub gpu_type: String,
    /// Its memory, MiB.
    #[serde(default)]
    pub memory_mb: u64,
}

/// GPUs of one type on a node, and how many of them running jobs hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GpuUsage {
    /// The type.
    #[serde(rename = "type")]
    pub gpu_type: String,
    /// Held by `starting` or `running` jobs.
    pub used: u32,
    /// On the node.
    pub total: u32,
}

/// Why `gpu_type` cannot name a type, if it cannot: 1–64 of `[a-z0-9._-]`.
pub fn gpu_type_error(gpu_type: &str) -> Option<String> {
    let ok = !gpu_type.is_empty()
        && gpu_type.len() <= 64
        && gpu_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    (!ok).then(|| format!("{gpu_type:?} is not a GPU type (1 to 64 of a-z, 0-9, '.', '_', '-')"))
}

/// Why `gpus` is not a usable inventory, if it is not: indices unique, types valid.
pub fn inventory_error(gpus: &[Gpu]) -> Option<String> {
    for (i, gpu) in gpus.iter().enumerate() {
        if let Some(bad) = gpu_type_error(&gpu.gpu_type) {
            return Some(format!("GPU {i}: {bad}"));
        }
        if gpus[..i].iter().any(|g| g.index == gpu.index) {
            return Some(format!("GPU index {} is listed twice", gpu.index));
        }
    }
    None
}

/// The devices a job asking for `count` GPUs (of `gpu_type`, when given) gets on a
/// node with `inventory` whose live jobs hold `held`: the lowest free indices of the
/// type, or none when not enough are free.
pub fn choose_devices(inventory: &[Gpu], held: &[u32], count: u32, gpu_type: Option<&str>) -> Option<Vec<u32>> {
    let mut free: Vec<u32> = inventory
        .iter()
        .filter(|g| !held.contains(&g.index) && gpu_type.is_none_or(|t| g.gpu_type == t))
        .map(|g| g.index)
        .collect();
    free.sort_unstable();
    let count = usize::try_from(count).ok()?;
    (count > 0 && free.len() >= count).then(|| free[..count].to_vec())
}

/// The types of the free devices (one entry per device): what a claim compares a
/// job's `gpus` and `gpu_type` against.
pub fn free_types(inventory: &[Gpu], held: &[u32]) -> Vec<String> {
    inventory.iter().filter(|g| !held.contains(&g.index)).map(|g| g.gpu_type.clone()).collect()
}

/// Used and total GPUs by type on a node with `inventory` whose live jobs hold `held`.
pub fn gpu_usage(inventory: &[Gpu], held: &[u32]) -> Vec<GpuUsage> {
    let mut usage: Vec<GpuUsage> = Vec::new();
    for gpu in inventory {
        let used = u32::from(held.contains(&gpu.index));
        match usage.iter_mut().find(|u| u.gpu_type == gpu.gpu_type) {
            Some(u) => {
                u.total += 1;
                u.used += used;
            }
            None => usage.push(GpuUsage { gpu_type: gpu.gpu_type.clone(), used, total: 1 }),
        }
    }
    usage.sort_by(|a, b| a.gpu_type.cmp(&b.gpu_type));
    usage
}

/// The type jobs ask for, from the name NVML gives a device: vendor and product-line
/// words dropped, then the words up to the first with a digit, lower-case, joined
/// with `-` ("NVIDIA H100 80GB HBM3" → `h100`, "NVIDIA GeForce RTX 4090" →
/// `rtx-4090`, "Tesla V100-SXM2-16GB" → `v100`). `--gpus FILE` names types exactly.
pub fn gpu_type_from_name(name: &str) -> String {
    const DROPPED: [&str; 5] = ["nvidia", "geforce", "tesla", "quadro", "titan"];
    let mut words = Vec::new();
    for word in name.split(|c: char| c.is_whitespace() || c == '-').filter(|w| !w.is_empty()) {
        let word = word.to_ascii_lowercase();
        if DROPPED.contains(&word.as_str()) {
            continue;
        }
        let digit = word.bytes().any(|b| b.is_ascii_digit());
        words.push(word.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect::<String>());
        if digit {
            break;
        }
    }
    let joined = words.into_iter().filter(|w| !w.is_empty()).collect::<Vec<_>>().join("-");
    if joined.is_empty() { "gpu".to_owned() } else { joined.chars().take(64).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, gpu_type: &str) -> Gpu {
        Gpu { index, uuid: format!("GPU-{index}"), gpu_type: gpu_type.into(), memory_mb: 1024 }
    }

    #[test]
    fn devices_are_the_lowest_free_of_the_type() {
        let inv = [gpu(0, "h100"), gpu(1, "a100"), gpu(2, "h100"), gpu(3, "h100")];
        assert_eq!(choose_devices(&inv, &[], 2, None), Some(vec![0, 1]));
        assert_eq!(choose_devices(&inv, &[0], 2, Some("h100")), Some(vec![2, 3]));
        assert_eq!(choose_devices(&inv, &[0, 2], 2, Some("h100")), None);
        assert_eq!(choose_devices(&inv, &[], 1, Some("l4")), None);
        assert_eq!(choose_devices(&inv, &[], 0, None), None, "a job without GPUs gets none");
        assert_eq!(free_types(&inv, &[1, 3]), ["h100", "h100"]);
    }

    #[test]
    fn usage_counts_held_devices_by_type() {
        let inv = [gpu(0, "h100"), gpu(1, "a100"), gpu(2, "h100")];
        let usage = gpu_usage(&inv, &[2, 7]);
        assert_eq!(
            usage,
            [
                GpuUsage { gpu_type: "a100".into(), used: 0, total: 1 },
                GpuUsage { gpu_type: "h100".into(), used: 1, total: 2 }
            ]
        );
    }

    #[test]
    fn types_come_from_device_names() {
        assert_eq!(gpu_type_from_name("NVIDIA H100 80GB HBM3"), "h100");
        assert_eq!(gpu_type_from_name("NVIDIA GeForce RTX 4090"), "rtx-4090");
        assert_eq!(gpu_type_from_name("Tesla V100-SXM2-16GB"), "v100");
        assert_eq!(gpu_type_from_name("NVIDIA A100-SXM4-40GB"), "a100");
        assert_eq!(gpu_type_from_name("NVIDIA L4"), "l4");
        assert_eq!(gpu_type_from_name(""), "gpu");
        assert!(gpu_type_error(&gpu_type_from_name("NVIDIA RTX A6000")).is_none());
    }

    #[test]
    fn an_inventory_has_unique_indices_and_valid_types() {
        assert!(inventory_error(&[gpu(0, "h100"), gpu(1, "h100")]).is_none());
        assert!(inventory_error(&[gpu(0, "h100"), gpu(0, "h100")]).is_some_and(|e| e.contains("twice")));
        assert!(inventory_error(&[gpu(0, "H 100")]).is_some());
    }
}
