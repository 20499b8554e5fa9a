//! What the private Redis itself says it spent: CPU seconds (`INFO cpu`),
//! commands (`INFO commandstats`, which counts the commands a script runs
//! too), SCAN calls, and bytes written to clients (`INFO stats`). The
//! benchmark takes a sample before and after a measurement and divides the
//! difference by the requests served, so a cost is Redis's own, not the
//! client's view of it.

use std::ops::Sub;

/// Redis's counters at one moment (or, after `-`, over an interval).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RedisSample {
    /// `used_cpu_sys` + `used_cpu_user`, seconds.
    pub cpu_seconds: f64,
    /// The sum of `calls` over `INFO commandstats`.
    pub commands: u64,
    /// `calls` of `cmdstat_scan`.
    pub scans: u64,
    /// `usec` of `cmdstat_scan`: Redis's CPU in SCAN itself, µs.
    pub scan_usec: u64,
    /// `calls` of `cmdstat_info`: the samples the benchmark itself takes.
    pub infos: u64,
    /// `total_net_output_bytes`.
    pub output_bytes: u64,
}

impl RedisSample {
    /// Reads the counters from the text of `INFO cpu stats commandstats`.
    pub fn parse(info: &str) -> Self {
        let mut sample = Self::default();
        for line in info.lines().map(str::trim) {
            if let Some(v) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                sample.cpu_seconds += v.parse::<f64>().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("total_net_output_bytes:") {
                sample.output_bytes = v.parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("cmdstat_") {
                let (name, stats) = rest.split_once(':').unwrap_or((rest, ""));
                let calls: u64 = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                sample.commands += calls;
                if name == "scan" {
                    sample.scans = calls;
                    sample.scan_usec = stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("usec="))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                } else if name == "info" {
                    sample.infos = calls;
                }
            }
        }
        sample
    }

    /// Takes a sample from the server `conn` talks to.
    pub async fn take(conn: &mut redis::aio::MultiplexedConnection) -> Result<Self, String> {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .arg("stats")
            .arg("commandstats")
            .query_async(conn)
            .await
            .map_err(|e| format!("INFO: {e}"))?;
        Ok(Self::parse(&info))
    }

    /// This interval's cost per request served: (CPU µs, commands, bytes out).
    pub fn per_request(&self, requests: u64) -> RedisCost {
        let n = requests.max(1) as f64;
        RedisCost {
            cpu_us: self.cpu_seconds * 1e6 / n,
            commands: self.commands as f64 / n,
            output_bytes: self.output_bytes as f64 / n,
            scans: self.scans as f64 / n,
            scan_cpu_us: self.scan_usec as f64 / n,
        }
    }
}

impl Sub for RedisSample {
    type Output = Self;

    fn sub(self, before: Self) -> Self {
        Self {
            cpu_seconds: (self.cpu_seconds - before.cpu_seconds).max(0.0),
            commands: self.commands.saturating_sub(before.commands),
            scans: self.scans.saturating_sub(before.scans),
            scan_usec: self.scan_usec.saturating_sub(before.scan_usec),
            infos: self.infos.saturating_sub(before.infos),
            output_bytes: self.output_bytes.saturating_sub(before.output_bytes),
        }
    }
}

/// Redis's cost of one request, averaged over a measurement.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RedisCost {
    pub cpu_us: f64,
    pub commands: f64,
    pub output_bytes: f64,
    pub scans: f64,
    /// Of `cpu_us`, what SCAN itself took (`cmdstat_scan` usec).
    pub scan_cpu_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\n\
        used_cpu_sys_children:9.000000\r\n\r\n# Stats\r\ntotal_net_output_bytes:4096\r\n\
        total_net_input_bytes:77\r\n\r\n# Commandstats\r\n\
        cmdstat_get:calls=10,usec=12,usec_per_call=1.20,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_scan:calls=3,usec=300,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn a_sample_adds_system_and_user_cpu_and_every_command() {
        let s = RedisSample::parse(INFO);
        assert_eq!(
            s,
            RedisSample {
                cpu_seconds: 1.75,
                commands: 13,
                scans: 3,
                scan_usec: 300,
                infos: 0,
                output_bytes: 4096,
            }
        );
    }

    #[test]
    fn an_interval_costs_its_difference_per_request() {
        let before = RedisSample::parse(INFO);
        let after = RedisSample {
            cpu_seconds: before.cpu_seconds + 0.002,
            commands: before.commands + 40,
            scans: before.scans + 4,
            scan_usec: before.scan_usec + 400,
            infos: before.infos,
            output_bytes: before.output_bytes + 8000,
        };
        let cost = (after - before).per_request(4);
        assert!((cost.cpu_us - 500.0).abs() < 1e-6, "{cost:?}");
        assert_eq!(
            (
                cost.commands,
                cost.scans,
                cost.scan_cpu_us,
                cost.output_bytes
            ),
            (10.0, 1.0, 100.0, 2000.0)
        );
        // A restarted Redis (counters lower) costs nothing rather than wrapping.
        assert_eq!((before - after).commands, 0);
    }
}
