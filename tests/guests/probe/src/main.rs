//! `probe`: a plain WASI 0.2 command (no SDK) for end-to-end tests of the sandbox and
//! its limits. `argv[1]` picks the behaviour (`argv[0]` is the plugin name); every mode
//! prints what it did, so a test can assert on the job's stdout and stderr.
//!
//! | mode | behaviour |
//! | --- | --- |
//! | `echo ARGS…` | `arg:<v>` per arg, `env:K=V` per env var (sorted) on stdout; `to-stderr` on stderr; writes `/output/result.txt` (`result\n`) and `/output/sub/x.txt` (`x\n`) |
//! | `exit N` | prints `exiting N`, exits with code N (0–255) through `exit-with-code` |
//! | `trap` | panics with `probe trap` (a wasm trap) |
//! | `sleep SECS` | sleeps SECS (fractions allowed), prints `slept` |
//! | `spin` | busy loop forever, no host calls |
//! | `alloc MB` | allocates and touches MB MiB per step forever, printing `allocated <total> MiB` |
//! | `recurse` | unbounded recursion (stack overflow trap) |
//! | `open-files N` | opens `/work/f<i>`, keeps every handle; `opened <count>` every 1000; on error `open failed at <i>: <err>` on stderr, exit 1 |
//! | `flood MIB` | writes MIB MiB of text to stdout in 64 KiB chunks, then `flood done` on stderr |
//! | `write-output MIB [ignore-errors]` | writes MIB MiB to `/output/big.bin` in 1 MiB chunks; `wrote <n> MiB`, or `write failed at <n> MiB: <err>` on stderr and exit 1 (with `ignore-errors`: stop writing, print `done`, exit 0) |
//! | `write-work MIB` | the same, to `/work/big.bin` |
//! | `write-output-wasi MIB` | through WASI 0.2 itself (no libc): writes MIB MiB to `/output/deep/big.bin` with `blocking-write-and-flush`, then one positional `write` at its end; prints `wrote <n> MiB` or `write failed at <n> MiB: <error-code>`, then `positional write: ok` or `positional write failed: <error-code>`; exit 0 |
//! | `move-to-output MIB` | the same to `/work/big.bin`, then renames it to `/output/big.bin` and prints `moved` |
//! | `read-input` | `input:<path>:<len>` per file under `/input` (sorted), then `input-count:<n>` |
//! | `grep PATTERN` | `match:<path>:<line>` per line of a file under `/input` holding PATTERN (paths relative to `/input`, sorted); copies each such file to the same path under `/output`; then `grep-files:<n>` |
//! | `create PATH` | tries to create the file PATH; prints `create:<path>:ok` or `create:<path>:blocked:<err>`; exit 0 |
//! | `env-dump` | `env:K=V` per env var (sorted), then `env-count:<n>` |
//! | `escape [PORT]` | tries to get out of the sandbox; one line per attempt: `escape:<name>:blocked:<err>`, `escape:<name>:ESCAPED:<detail>` or `escape:<name>:skipped:<why>` |
//! | `fail-until N` | prints `attempt <JOBHOST_ATTEMPT>`; exits 1 (`too early`) while it is below N, else 0 |
//! | `task-output` | writes `/output/task.txt`: `task <TASK_INDEX> of <TASK_COUNT>` (a workflow task's) |
//! | `gather` | `<path>=<content>` per file under `/input` (paths relative to `/input`, sorted, content trimmed) |
//! | `noop` | nothing, exit 0 |
//!
//! Anything else prints the usage on stderr and exits 2.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const USAGE: &str = "usage: probe <mode> [args]
modes: echo ARGS... | exit N | trap | sleep SECS | spin | alloc MB_PER_STEP | recurse
       open-files N | flood MIB | write-output MIB [ignore-errors] | write-work MIB
       write-output-wasi MIB
       move-to-output MIB | read-input | grep PATTERN | create PATH | env-dump
       escape [PORT] | fail-until N | task-output | gather | noop";

const MIB: usize = 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let rest = args.get(2..).unwrap_or(&[]);
    match mode {
        "echo" => echo(rest),
        "exit" => {
            let code: u8 = number(rest, "exit code (0-255)");
            println!("exiting {code}");
            exit(code);
        }
        "trap" => panic!("probe trap"),
        "sleep" => {
            let secs: f64 = number(rest, "seconds");
            let Ok(duration) = Duration::try_from_secs_f64(secs) else {
                usage(&format!("cannot sleep {secs} seconds"));
            };
            std::thread::sleep(duration);
            println!("slept");
        }
        "spin" => spin(),
        "alloc" => match number(rest, "MiB per step") {
            // A step must fit in wasm32's 4 GiB address space.
            mb @ (0 | 4096..) => usage(&format!("alloc takes 1 to 4095 MiB per step, not {mb}")),
            mb => alloc(mb),
        },
        "recurse" => {
            println!("recursing");
            flush();
            let depth = recurse(0);
            println!("recursion returned at depth {depth}");
        }
        "open-files" => open_files(number(rest, "file count")),
        "flood" => flood(number(rest, "MiB")),
        "write-output" => {
            let ignore_errors = rest.get(1).is_some_and(|a| a == "ignore-errors");
            write_file("/output/big.bin", number(rest, "MiB"), ignore_errors);
        }
        "write-work" => write_file("/work/big.bin", number(rest, "MiB"), false),
        "write-output-wasi" => write_output_wasi(number(rest, "MiB")),
        "move-to-output" => {
            write_file("/work/big.bin", number(rest, "MiB"), false);
            if let Err(e) = fs::rename("/work/big.bin", "/output/big.bin") {
                fail(&format!("rename failed: {e}"));
            }
            println!("moved");
        }
        "read-input" => read_input(),
        "grep" => grep(rest.first().map_or("", String::as_str)),
        "create" => {
            let path = rest.first().map_or("", String::as_str);
            match File::create(path) {
                Ok(_) => println!("create:{path}:ok"),
                Err(e) => println!("create:{path}:blocked:{e}"),
            }
        }
        "env-dump" => {
            let vars = sorted_env();
            for (k, v) in &vars {
                println!("env:{k}={v}");
            }
            println!("env-count:{}", vars.len());
        }
        "escape" => escape(rest.first().map(String::as_str)),
        "fail-until" => {
            let until: u32 = number(rest, "attempt");
            let attempt: u32 = std::env::var("JOBHOST_ATTEMPT").ok().and_then(|a| a.parse().ok()).unwrap_or(1);
            println!("attempt {attempt}");
            if attempt < until {
                eprintln!("too early");
                exit(1);
            }
        }
        "task-output" => {
            let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "?".into());
            let line = format!("task {} of {}\n", var("TASK_INDEX"), var("TASK_COUNT"));
            if let Err(e) = fs::write("/output/task.txt", &line) {
                fail(&format!("writing /output/task.txt: {e}"));
            }
            print!("{line}");
        }
        "gather" => {
            let files = files_under(Path::new("/input")).unwrap_or_else(|e| fail(&format!("listing /input: {e}")));
            for path in &files {
                let content =
                    fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("reading {}: {e}", path.display())));
                let relative = path.strip_prefix("/input").unwrap_or(path);
                println!("{}={}", relative.display(), content.trim());
            }
        }
        "noop" => {}
        _ => usage(&format!("unknown mode {mode:?}")),
    }
}

/// Prints `problem` and the usage on stderr, exits 2.
fn usage(problem: &str) -> ! {
    eprintln!("probe: {problem}\n{USAGE}");
    exit(2)
}

/// Parses the mode's first argument, or exits through [`usage`].
fn number<T: std::str::FromStr>(rest: &[String], what: &str) -> T {
    match rest.first().map(|s| s.parse::<T>()) {
        Some(Ok(n)) => n,
        _ => usage(&format!("expected {what} as the argument, got {:?}", rest.first())),
    }
}

fn flush() {
    // Nothing useful to do if the host closed a stream: the exit status still tells.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}

/// Exits with exactly `code`. Rust std on wasm32-wasip2 maps every non-zero
/// `process::exit` to 1, so WASI's `exit-with-code` is called directly; it does not
/// flush std's buffers, hence the flush first.
fn exit(code: u8) -> ! {
    flush();
    #[cfg(target_os = "wasi")]
    wasip2::cli::exit::exit_with_code(code);
    // Reached only off WASI (the import above never returns).
    std::process::exit(i32::from(code))
}

/// Prints `message` on stderr and exits 1.
fn fail(message: &str) -> ! {
    flush();
    eprintln!("{message}");
    exit(1)
}

fn sorted_env() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    vars
}

fn echo(rest: &[String]) {
    for arg in rest {
        println!("arg:{arg}");
    }
    for (k, v) in sorted_env() {
        println!("env:{k}={v}");
    }
    // stdout and stderr are separate streams on the host; flushing first makes the
    // stdout lines arrive before the stderr one.
    flush();
    eprintln!("to-stderr");
    if let Err(e) = fs::write("/output/result.txt", "result\n") {
        fail(&format!("writing /output/result.txt: {e}"));
    }
    if let Err(e) = fs::create_dir_all("/output/sub").and_then(|()| fs::write("/output/sub/x.txt", "x\n")) {
        fail(&format!("writing /output/sub/x.txt: {e}"));
    }
}

/// Burns CPU without ever calling the host: only epoch interruption can stop it.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        // black_box keeps the optimizer from proving the loop does nothing.
        i = black_box(i.wrapping_add(1));
    }
}

/// Grows memory by `mb` MiB per step until the host's memory limit stops it (the
/// allocation failure aborts, i.e. traps).
fn alloc(mb: usize) -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    loop {
        let mut block = vec![0u8; mb * MIB];
        // Touch every page so the memory is really used, not just reserved.
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        blocks.push(black_box(block));
        total += mb;
        println!("allocated {total} MiB");
    }
}

/// Recurses until the guest's stack runs out. Values computed before the call and used
/// after it must live across it, so every frame takes real stack space, and the work
/// after the call (not an accumulation) keeps it from becoming a loop. The condition,
/// never true at run time, keeps rustc's unconditional-recursion lint quiet.
///
/// Which stack runs out first decides the trap: wasmtime's native one ("call stack
/// exhausted") or, in an unoptimized build that keeps locals in linear memory, Rust's
/// shadow stack there ("out of bounds memory access"). Either way the guest traps.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let [a, b, c, d, e, f, g, h] = [1, 3, 5, 7, 11, 13, 17, 19].map(|k: u64| depth.wrapping_mul(k) ^ (depth >> 3));
    let deeper = recurse(depth + 1);
    (deeper ^ a).wrapping_add(b).rotate_left(3).wrapping_mul(c | 1) ^ d ^ e.wrapping_add(f) ^ g.wrapping_mul(h)
}

fn open_files(n: usize) {
    let mut handles = Vec::with_capacity(n.min(1 << 20));
    for i in 0..n {
        match File::create(format!("/work/f{i}")) {
            Ok(f) => handles.push(f),
            Err(e) => fail(&format!("open failed at {i}: {e}")),
        }
        if (i + 1) % 1000 == 0 {
            println!("opened {}", i + 1);
        }
    }
    println!("open-files: all {n} opened");
    drop(black_box(handles));
}

fn flood(mib: usize) {
    // 64 KiB of 64-byte text lines, so the flood is readable as a log too.
    let mut line = [b'x'; 64];
    line[63] = b'\n';
    let chunk: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
    let mut stdout = io::stdout().lock();
    for i in 0..mib * 16 {
        if let Err(e) = stdout.write_all(&chunk) {
            drop(stdout);
            fail(&format!("flood write failed at {} KiB: {e}", i * 64));
        }
    }
    if let Err(e) = stdout.flush() {
        drop(stdout);
        fail(&format!("flood flush failed: {e}"));
    }
    drop(stdout);
    eprintln!("flood done");
}

/// Writes `mib` MiB to `path`. A failed write is reported on stderr; then the probe
/// exits 1, or with `ignore_errors` stops writing, prints `done` and returns.
fn write_file(path: &str, mib: usize, ignore_errors: bool) {
    let failed = |message: String| {
        if !ignore_errors {
            fail(&message);
        }
        eprintln!("{message}");
        println!("done");
    };
    let mut file = match File::create(path) {
        Ok(f) => f,
        Err(e) => return failed(format!("write failed at 0 MiB: {e}")),
    };
    let chunk = vec![0xa5u8; MIB];
    for n in 0..mib {
        if let Err(e) = file.write_all(&chunk) {
            return failed(format!("write failed at {n} MiB: {e}"));
        }
    }
    if let Err(e) = file.flush() {
        return failed(format!("write failed at {mib} MiB: {e}"));
    }
    println!("wrote {mib} MiB");
}

/// Writes `mib` MiB under `/output` the way a guest using WASI 0.2 directly does
/// (through a sub-directory opened with `open-at`), and reports the WASI error codes
/// of failed writes: std goes through the preview 1 adapter, which reports every
/// stream failure as a plain I/O error.
#[cfg(target_os = "wasi")]
fn write_output_wasi(mib: usize) {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags, filesystem_error_code};
    use wasip2::io::streams::StreamError;
    let dirs = wasip2::filesystem::preopens::get_directories();
    let Some((output, _)) = dirs.iter().find(|(_, path)| path == "/output") else {
        fail("no /output preopen");
    };
    let failed = |what: &str, e: wasip2::filesystem::types::ErrorCode| -> ! { fail(&format!("{what}: {}", e.name())) };
    output.create_directory_at("deep").unwrap_or_else(|e| failed("mkdir", e));
    let deep = output
        .open_at(PathFlags::empty(), "deep", OpenFlags::DIRECTORY, DescriptorFlags::READ)
        .unwrap_or_else(|e| failed("open deep", e));
    let file = deep
        .open_at(
            PathFlags::empty(),
            "big.bin",
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::READ | DescriptorFlags::WRITE,
        )
        .unwrap_or_else(|e| failed("open big.bin", e));
    let stream = file.write_via_stream(0).unwrap_or_else(|e| failed("write-via-stream", e));
    // `blocking-write-and-flush` takes at most 4096 bytes a call.
    let chunk = [0xa5u8; 4096];
    let mut written = 0usize;
    while written < mib * MIB {
        match stream.blocking_write_and_flush(&chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => {
                let code = match &e {
                    StreamError::LastOperationFailed(err) => {
                        filesystem_error_code(err).map_or_else(|| "no error code".to_owned(), |c| c.name().to_owned())
                    }
                    StreamError::Closed => "closed".to_owned(),
                };
                println!("write failed at {} MiB: {code}", written / MIB);
                break;
            }
        }
    }
    if written == mib * MIB {
        println!("wrote {mib} MiB");
    }
    drop(stream);
    match file.write(&chunk, written as u64) {
        Ok(_) => println!("positional write: ok"),
        Err(e) => println!("positional write failed: {}", e.name()),
    }
}

/// Off WASI (the probe only builds natively for the workspace's lint pass).
#[cfg(not(target_os = "wasi"))]
fn write_output_wasi(_mib: usize) {
    usage("write-output-wasi needs WASI");
}

/// Every file under `dir`, recursively, sorted by path; symlinks are not followed.
fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A small ripgrep: searches `/input` and leaves the files that match in `/output`.
fn grep(pattern: &str) {
    let input = Path::new("/input");
    let files = files_under(input).unwrap_or_else(|e| fail(&format!("listing /input: {e}")));
    let mut matched = 0;
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| fail(&format!("reading {}: {e}", path.display())));
        let text = String::from_utf8_lossy(&data);
        let rel = path.strip_prefix(input).unwrap_or(path);
        let mut hit = false;
        for line in text.lines().filter(|l| l.contains(pattern)) {
            println!("match:{}:{line}", rel.display());
            hit = true;
        }
        if hit {
            matched += 1;
            let out = Path::new("/output").join(rel);
            if let Some(parent) = out.parent() {
                fs::create_dir_all(parent).unwrap_or_else(|e| fail(&format!("creating {}: {e}", parent.display())));
            }
            fs::write(&out, &data).unwrap_or_else(|e| fail(&format!("writing {}: {e}", out.display())));
        }
    }
    println!("grep-files:{matched}");
}

fn read_input() {
    let files = match files_under(Path::new("/input")) {
        Ok(files) => files,
        // No /input at all reads as no input files.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => fail(&format!("listing /input: {e}")),
    };
    for path in &files {
        match fs::read(path) {
            Ok(data) => println!("input:{}:{}", path.display(), data.len()),
            Err(e) => println!("input-error:{}:{e}", path.display()),
        }
    }
    println!("input-count:{}", files.len());
}

/// The outcome of one escape attempt.
enum Attempt {
    /// The sandbox held; the error (or what was seen instead).
    Blocked(String),
    /// The guest got out; what it got.
    Escaped(String),
    /// Not tried, and why.
    Skipped(&'static str),
}

impl<T> From<io::Result<T>> for Attempt
where
    T: Into<Attempt>,
{
    fn from(r: io::Result<T>) -> Self {
        match r {
            Ok(t) => t.into(),
            Err(e) => Attempt::Blocked(e.to_string()),
        }
    }
}

impl From<String> for Attempt {
    fn from(detail: String) -> Self {
        Attempt::Escaped(detail)
    }
}

fn report(name: &str, attempt: Attempt) {
    // One line per attempt whatever the texts contain.
    let clean = |s: &str| s.replace(['\n', '\r'], "\\n").chars().take(200).collect::<String>();
    match attempt {
        Attempt::Blocked(e) => println!("escape:{name}:blocked:{}", clean(&e)),
        Attempt::Escaped(d) => println!("escape:{name}:ESCAPED:{}", clean(&d)),
        Attempt::Skipped(why) => println!("escape:{name}:skipped:{why}"),
    }
}

/// Reading `path` succeeding is an escape; the detail is its first line.
fn read_file(path: &str) -> Attempt {
    fs::read_to_string(path).map(|s| format!("read {path}: {}", s.lines().next().unwrap_or(""))).into()
}

/// Listing `path` succeeding is an escape; the detail is what it holds.
fn list_dir(path: &str) -> Attempt {
    let names = fs::read_dir(path).and_then(|entries| {
        let mut names =
            entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    });
    names.map(|n| format!("listed {path}: [{}]", n.join(", "))).into()
}

/// Creates a symlink at `link` (under `/work`) pointing to `target`, then runs `then`:
/// a symlink alone is harmless, what counts is what can be reached through it.
fn through_symlink(target: &str, link: &str, then: impl FnOnce() -> Attempt) -> Attempt {
    match symlink(target, link) {
        Ok(()) => then(),
        Err(e) => Attempt::Blocked(format!("symlink {link} -> {target}: {e}")),
    }
}

/// Creates a symlink through WASI's `symlink-at` on the `/work` preopen (std's symlink
/// for WASI is unstable).
#[cfg(target_os = "wasi")]
fn symlink(target: &str, link: &str) -> Result<(), String> {
    let Some(relative) = link.strip_prefix("/work/") else {
        return Err(format!("{link} is not under /work"));
    };
    let dirs = wasip2::filesystem::preopens::get_directories();
    let Some((work, _)) = dirs.iter().find(|(_, path)| path == "/work") else {
        return Err("no /work preopen".to_owned());
    };
    work.symlink_at(target, relative).map_err(|e| e.name().to_owned())
}

/// Off WASI (the probe only builds natively for the workspace's lint pass).
#[cfg(unix)]
fn symlink(target: &str, link: &str) -> Result<(), String> {
    std::os::unix::fs::symlink(target, link).map_err(|e| e.to_string())
}

#[cfg(not(any(unix, target_os = "wasi")))]
fn symlink(target: &str, link: &str) -> Result<(), String> {
    Err(format!("no symlinks here ({target}, {link})"))
}

fn escape(port: Option<&str>) {
    report("etc-passwd", read_file("/etc/passwd"));
    report("input-dotdot", read_file("/input/../../etc/passwd"));
    report("cwd-dotdot", read_file("../etc/passwd"));

    // The guest's root may be listable, but must show nothing beyond its three mounts.
    let root = match fs::read_dir("/") {
        Ok(entries) => {
            let mut names: Vec<String> =
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            if names.iter().all(|n| ["input", "output", "work"].contains(&n.as_str())) {
                Attempt::Blocked(format!("sees only [{}]", names.join(", ")))
            } else {
                Attempt::Escaped(format!("sees [{}]", names.join(", ")))
            }
        }
        Err(e) => Attempt::Blocked(e.to_string()),
    };
    report("read-dir-root", root);

    report("symlink-root", through_symlink("/", "/work/l1", || read_file("/work/l1/etc/passwd")));
    report("symlink-etc", through_symlink("/etc", "/work/l2", || read_file("/work/l2/passwd")));
    report("symlink-dotdot", through_symlink("../../..", "/work/l3", || list_dir("/work/l3")));
    report(
        "symlink-trailing-slash",
        through_symlink("../../etc/", "/work/l4", || match read_file("/work/l4/passwd") {
            Attempt::Blocked(read_err) => match list_dir("/work/l4/") {
                Attempt::Blocked(list_err) => Attempt::Blocked(format!("read: {read_err}; list: {list_err}")),
                other => other,
            },
            other => other,
        }),
    );

    let first_input = files_under(Path::new("/input")).ok().and_then(|f| f.into_iter().next());
    match first_input {
        None => {
            for name in ["hardlink-input", "write-input", "truncate-input", "create-input", "rename-input"] {
                report(name, Attempt::Skipped("no input files"));
            }
        }
        Some(first) => {
            let first = first.display().to_string();
            // A writable hard link to a read-only input file is itself the breach.
            report(
                "hardlink-input",
                fs::hard_link(&first, "/work/hl").map(|()| format!("linked {first} as /work/hl")).into(),
            );
            report(
                "write-input",
                OpenOptions::new().write(true).open(&first).map(|_| format!("opened {first} for writing")).into(),
            );
            report(
                "truncate-input",
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&first)
                    .map(|f| format!("truncated {first} (now {:?} bytes)", f.metadata().map(|m| m.len()).ok()))
                    .into(),
            );
            report(
                "create-input",
                fs::write("/input/new.txt", "x").map(|()| "created /input/new.txt".to_owned()).into(),
            );
            // Last: if it escaped, the attempts above would have nothing to act on.
            report(
                "rename-input",
                fs::rename(&first, "/work/moved").map(|()| format!("moved {first} to /work/moved")).into(),
            );
        }
    }

    let tcp = match port.map(str::parse::<u16>) {
        None => Attempt::Skipped("no port given"),
        Some(Err(e)) => Attempt::Blocked(format!("bad port: {e}")),
        Some(Ok(port)) => std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|s| format!("connected to {:?}", s.peer_addr().ok()))
            .into(),
    };
    report("tcp-connect", tcp);
}
