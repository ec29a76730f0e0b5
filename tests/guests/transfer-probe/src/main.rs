//! `transfer-probe`: writes `/work/src.bin`, then asks `jobhost:plugin/transfer` to copy
//! its read stream into `/output/dst.bin` and to hash it, and prints one line per call:
//! `copy ok <bytes>` or `copy <error>`, `absorb ok <hex>` or `absorb <error>`. The
//! sandbox tests use it to show that only a job granted `transfer` (the model puller)
//! can use it: an ordinary job's calls answer `denied`, and nothing reaches `/output`
//! past its quota that way.

fn main() {
    if let Err(e) = run() {
        eprintln!("error {e}");
        std::process::exit(1);
    }
}

#[cfg(target_os = "wasi")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        inline: "
            package jobhost:transfer-probe;
            world probe {
                import jobhost:plugin/transfer@0.1.0;
            }
        ",
        world: "probe",
        with: {
            "jobhost:plugin/transfer@0.1.0": generate,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
            "wasi:filesystem/types@0.2.12": wasip2::filesystem::types,
        },
    });
}

#[cfg(target_os = "wasi")]
fn run() -> Result<(), String> {
    use bindings::jobhost::plugin::transfer::{self, Sha256};
    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

    let data = vec![7u8; 64 << 10];
    std::fs::write("/work/src.bin", &data).map_err(|e| format!("writing /work/src.bin: {e}"))?;
    let dirs = wasip2::filesystem::preopens::get_directories();
    let dir = |name: &str| -> Result<&Descriptor, String> {
        dirs.iter().find(|(_, p)| p == name).map(|(d, _)| d).ok_or(format!("no {name} preopen"))
    };
    let src = dir("/work")?
        .open_at(PathFlags::empty(), "src.bin", OpenFlags::empty(), DescriptorFlags::READ)
        .map_err(|e| format!("opening src.bin: {}", e.name()))?;
    let dst = dir("/output")?
        .open_at(PathFlags::empty(), "dst.bin", OpenFlags::CREATE, DescriptorFlags::WRITE)
        .map_err(|e| format!("opening dst.bin: {}", e.name()))?;
    let stream = src.read_via_stream(0).map_err(|e| format!("reading src.bin: {}", e.name()))?;
    let digest = Sha256::new();
    match transfer::copy(&stream, &dst, 0, data.len() as u64, Some(&digest)) {
        Ok(copied) => println!("copy ok {}", copied.bytes),
        Err(e) => println!("copy {}", name(&e)),
    }
    match digest.absorb_file(&src, data.len() as u64) {
        Ok(()) => println!("absorb ok {}", digest.hex_digest()),
        Err(e) => println!("absorb {}", name(&e)),
    }
    Ok(())
}

#[cfg(target_os = "wasi")]
fn name(e: &bindings::jobhost::plugin::transfer::TransferError) -> String {
    use bindings::jobhost::plugin::transfer::TransferError;
    match e {
        TransferError::Denied => "denied".to_owned(),
        TransferError::Stream(why) => format!("stream error: {why}"),
        TransferError::File(why) => format!("file error: {why}"),
    }
}

#[cfg(not(target_os = "wasi"))]
fn run() -> Result<(), String> {
    Err("only runs on WASI".into())
}
