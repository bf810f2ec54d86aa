//! Shared parts of the webhook-armor benchmarks.

pub mod server;

/// The bench binaries (all link this library) allocate with mimalloc, as we
/// recommend for a service built on webhook-armor: with glibc's malloc, its
/// arena locks and cross-thread frees took a large share of a busy pipeline's
/// time (memory delivery 32,000/s with it, 58,000/s with mimalloc, in
/// back-to-back runs here). Every baseline runs in the same binary, on the
/// same allocator. `--features system-allocator` measures with glibc's.
/// mimalloc is built with `no_thp` (see the workspace `Cargo.toml`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The JSON body the queue and delivery benches send.
pub const PAYLOAD: &[u8] = br#"{"type":"invoice.paid","data":{"amount":4200,"currency":"eur"}}"#;

/// `REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `DATABASE_URL`, or the local PostgreSQL.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A name unique to this run (nanoseconds since the epoch, in hex), for
/// Redis prefixes, PostgreSQL schemas and event ids that must not collide
/// with an earlier run's leftovers.
pub fn run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos()
    )
}

/// Deletes every key of the Redis pipeline `prefix` (keys are `{prefix}...`),
/// so a bench run leaves the database as it found it. Best effort.
pub async fn delete_redis_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{{{prefix}}}*");
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection)
                .await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// The whole machine's CPU time over an interval, from `/proc/stat`: what
/// the bench, its servers and the kernel used, and what the hypervisor took.
///
/// Throughput on a shared virtual machine moves with its neighbours: in
/// one hour here the same binary's bare-HTTP baseline went from 94,000 to
/// 33,000 requests/s while the hypervisor took up to 43% of the time
/// (steal). CPU time per operation, summed over every process on the
/// machine and without steal, moves far less; the benches print it beside
/// the rates so that a run on a slow machine still compares with one on a
/// fast machine.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: u64,
    steal: u64,
    total: u64,
    this_process: u64,
}

/// This process's user and system time in ticks, from `/proc/self/stat`.
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

impl MachineCpu {
    /// The counters now (zeros where `/proc/stat` cannot be read).
    pub fn now() -> Self {
        let line = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu user nice system idle iowait irq softirq steal guest guest_nice
        let fields: Vec<u64> = line
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        Self {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            steal: field(7),
            total: (0..8).map(field).sum(),
            this_process: own_ticks(),
        }
    }

    /// Since `start`: busy CPU time in microseconds (all cores, all
    /// processes, steal excluded) and steal as a percentage of all time.
    pub fn since(start: Self) -> CpuUsed {
        let end = Self::now();
        // USER_HZ is 100 on every Linux this runs on.
        let ticks_to_us = 10_000.0;
        let total = end.total.saturating_sub(start.total).max(1) as f64;
        CpuUsed {
            busy_us: end.busy.saturating_sub(start.busy) as f64 * ticks_to_us,
            this_process_us: end.this_process.saturating_sub(start.this_process) as f64
                * ticks_to_us,
            steal_percent: end.steal.saturating_sub(start.steal) as f64 / total * 100.0,
        }
    }
}

/// What [`MachineCpu::since`] measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuUsed {
    /// Busy CPU time, all cores and processes, microseconds.
    pub busy_us: f64,
    /// Of which this process (the bench, with its in-process receiver or
    /// server), microseconds; the rest is Redis or PostgreSQL, the kernel's
    /// work outside this process, and anything else running.
    pub this_process_us: f64,
    /// Time the hypervisor gave to others, percent of all CPU time.
    pub steal_percent: f64,
}

impl CpuUsed {
    /// Busy microseconds per operation, one decimal.
    pub fn us_per(&self, operations: usize) -> f64 {
        per(self.busy_us, operations)
    }

    /// This process's microseconds per operation, one decimal.
    pub fn this_process_us_per(&self, operations: usize) -> f64 {
        per(self.this_process_us, operations)
    }
}

fn per(us: f64, operations: usize) -> f64 {
    (us / operations.max(1) as f64 * 10.0).round() / 10.0
}
