//! What the benchmarks share (`bench/src/bin/*`): the backends, the mail rig (Dovecot +
//! Postfix started by the scripts), `mailroom serve` processes and their API ([`api`],
//! [`load`]), and small measuring helpers.

pub mod api;
pub mod load;
pub mod receiver;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use tokio::io::AsyncWriteExt as _;

use mailroom_testkit::{Backend, MailRig, MailUser};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Postgres,
}

impl BackendArg {
    pub fn backend(self) -> Backend {
        match self {
            BackendArg::Sqlite => Backend::Sqlite,
            BackendArg::Postgres => Backend::Postgres,
        }
    }

    /// The backends a run covers: the one asked for, else SQLite then PostgreSQL.
    pub fn chosen(asked: Option<BackendArg>) -> Vec<BackendArg> {
        match asked {
            Some(b) => vec![b],
            None => vec![BackendArg::Sqlite, BackendArg::Postgres],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            BackendArg::Sqlite => "SQLite",
            BackendArg::Postgres => "PostgreSQL",
        }
    }
}

/// The rig's directory and what the benchmark needs from it.
pub struct Rig {
    pub rig: MailRig,
    pub dir: PathBuf,
}

impl Rig {
    pub fn dovecot_conf(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    /// `user`'s Maildir (scripts/mail-rig: `mail_location = maildir:$d/mail/%u/Maildir`).
    pub fn maildir(&self, user: &MailUser) -> PathBuf {
        self.dir.join("mail").join(&user.address).join("Maildir")
    }

    pub fn doveadm(&self, args: &[&str]) -> anyhow::Result<String> {
        let conf = self.dovecot_conf();
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .context("doveadm")?;
        if !out.status.success() {
            bail!(
                "doveadm {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The rig the bench script started (its `MAILROOM_TEST_*` variables).
    pub fn from_env(script: &str) -> anyhow::Result<Self> {
        let Some(rig) = MailRig::from_env() else {
            bail!("the mail rig is not running: start this benchmark through {script}");
        };
        let dir: PathBuf = rig
            .dovecot_conf
            .as_ref()
            .and_then(|c| c.parent())
            .context("MAILROOM_TEST_DOVECOT_CONF")?
            .into();
        Ok(Rig { rig, dir })
    }

    /// `doveadm save -u user -m folder` of `message` (on stdin): a delivery as Dovecot's LDA
    /// makes it, without Postfix in the way.
    pub async fn save(&self, user: &str, folder: &str, message: &[u8]) -> anyhow::Result<()> {
        let mut child = tokio::process::Command::new("doveadm")
            .arg("-c")
            .arg(self.dovecot_conf())
            .args(["save", "-u", user, "-m", folder])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning doveadm save")?;
        let mut stdin = child.stdin.take().context("doveadm's stdin")?;
        stdin.write_all(message).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "doveadm save -m {folder}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Machine helpers
// ---------------------------------------------------------------------------------------------

/// (busy, total) CPU ticks of the whole machine, from /proc/stat.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The share of the machine's CPU that was busy over the next 2 s.
pub async fn machine_busy_now() -> Option<f64> {
    let before = machine_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    match (before, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    }
}

/// The `q` quantile of sorted durations, in ms (nearest rank).
pub fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Wall-clock time, unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An RFC 5322 date in UTC.
pub fn httpdate(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        MONTHS[dt.month() as usize - 1],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}
