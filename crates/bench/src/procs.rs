//! The servers under test, each a real process started here: `otter serve` (release build),
//! Mosquitto and nginx from Debian's packages. Each is killed when dropped.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "otter-bench-token";

pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn_pub(cmd: &mut Command) -> Result<Self> {
        Self::spawn(cmd)
    }

    fn spawn(cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Proc { child })
    }

    /// Resident memory of the process, in KiB.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_port(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub struct Otter {
    pub proc: Proc,
    pub mqtt: SocketAddr,
    pub http: String,
}

/// `otter serve` on fresh ports over the data dir `dir` (kept between runs: devices stay registered).
pub fn otter(bin: &Path, dir: &Path) -> Result<Otter> {
    let (mqtt, http) = (free_addr()?, free_addr()?);
    let proc = Proc::spawn(
        Command::new(bin)
            .args([
                "serve",
                "--mqtt-listen",
                &mqtt.to_string(),
                "--http-listen",
                &http.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            // Mosquitto has no per-client publish limit either; the round-trip row drives each
            // client far above a device's rate on purpose.
            .args(["--max-publish-rate", "0"])
            .env("OTTER_TOKEN", TOKEN)
            .env("OTTER_LOG", "warn"),
    )?;
    wait_port(http)?;
    wait_port(mqtt)?;
    Ok(Otter {
        proc,
        mqtt,
        http: format!("http://{http}"),
    })
}

pub struct Mosquitto {
    pub proc: Proc,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

pub fn mosquitto() -> Result<Mosquitto> {
    let dir = tempfile::tempdir()?;
    let addr = free_addr()?;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nlog_dest none\nmax_inflight_messages 0\nmax_queued_messages 100000\n",
            addr.port()
        ),
    )?;
    let proc = Proc::spawn(Command::new(which("mosquitto")?).arg("-c").arg(&conf))?;
    wait_port(addr)?;
    Ok(Mosquitto {
        proc,
        addr,
        _dir: dir,
    })
}

pub struct Nginx {
    pub _proc: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// nginx serving `root` with sendfile, as a CDN or reverse proxy would.
pub fn nginx(root: &Path) -> Result<Nginx> {
    let dir = tempfile::tempdir()?;
    let addr = free_addr()?;
    let p = dir.path().display();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes auto; pid {p}/nginx.pid; error_log {p}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
  client_body_temp_path {p}; proxy_temp_path {p}; fastcgi_temp_path {p}; uwsgi_temp_path {p}; scgi_temp_path {p};
  server {{ listen {addr}; root {root}; location / {{ }} }} }}\n",
            root = root.display()
        ),
    )?;
    let proc = Proc::spawn(
        Command::new(which("nginx")?)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path()),
    )?;
    wait_port(addr)?;
    Ok(Nginx {
        _proc: proc,
        url: format!("http://{addr}"),
        _dir: dir,
    })
}

pub fn which(name: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{name} is not installed (apt-get install mosquitto nginx-light wrk)")
}

/// CPU seconds this process (the load generator) has used so far.
pub fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}
