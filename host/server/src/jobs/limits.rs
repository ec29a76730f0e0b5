//! What a job may ask for: the server-wide defaults and maxima of per-job requests
//! ([`Limits`]), which are also the capacity the scheduler fits claimed jobs into.
//! Without settings they come from the machine (its cores, 80% of its memory), so a
//! server neither promises jobs more than it has nor leaves most of it idle.

use jobhost_model::Cpus;

/// `cpus` of a job that does not say, unless the server is told otherwise.
pub const DEFAULT_CPUS: Cpus = Cpus::from_millis(250);

/// Server-wide defaults and maxima of per-job requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `memory_mb` when a job does not say.
    pub default_memory_mb: u32,
    /// The most `memory_mb` a job may ask for.
    pub max_memory_mb: u32,
    /// `timeout_s` when a job does not say.
    pub default_timeout_s: u32,
    /// The most `timeout_s` a job may ask for.
    pub max_timeout_s: u32,
    /// CPUs jobs may declare in all at once (default: the machine's cores); a job
    /// asking for more could never start.
    pub capacity_cpus: u32,
    /// `cpus` when a job does not say: a quarter of a CPU, so short jobs share a core
    /// four ways; a job that computes for long declares what it needs.
    pub default_cpus: Cpus,
    /// Memory jobs may declare in all at once, MiB (default: 80% of the machine's).
    pub capacity_memory_mb: u32,
    /// Claims a job gets before a run lost to a crash fails it.
    pub max_attempts: u32,
    /// Whether this server runs container jobs (a container engine answered at start).
    pub containers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_memory_mb: 256,
            max_memory_mb: 4096,
            default_timeout_s: 600,
            max_timeout_s: 7 * 24 * 3600,
            capacity_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            default_cpus: DEFAULT_CPUS,
            capacity_memory_mb: machine_memory_mb().map_or(4096, |mb| (mb / 5 * 4) as u32),
            max_attempts: 1,
            containers: false,
        }
    }
}

impl Limits {
    /// How many jobs of the default `cpus` the CPU capacity holds: the default number
    /// of jobs a server runs at once (4 per core with the defaults).
    pub fn default_concurrency(&self) -> usize {
        let held = u64::from(self.capacity_cpus) * 1000 / u64::from(self.default_cpus.millis().max(1));
        usize::try_from(held).unwrap_or(usize::MAX).max(1)
    }
}

/// Total memory of the machine from `/proc/meminfo`, MiB.
fn machine_memory_mb() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}
