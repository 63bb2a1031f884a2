//! `otter-bench`: Otter side by side with the reference servers on the same workloads, in one
//! run, on one machine (these machines are noisy: compare the ratios, not the absolutes).
//!
//! Rows: (1) hold N connections: connect rate, memory per connection (vs Mosquitto);
//! (2) fan-out of one message to each of N devices (Otter: campaign start → every device holds its
//! update_firmware, each push recorded; Mosquitto: one publisher, N topics); (3) version-report
//! round trips (Otter answers itself; Mosquitto needs a separate responder process); (4) firmware
//! downloads vs nginx with sendfile, wrk as the client; (5) end to end: N simulated devices
//! upgrade a 1 MiB image, against the bound "fan-out time + bytes at nginx's rate".
//! `otter-bench sweep` runs rows 2 and 5 at several N and plots them (sweep.rs, plot.rs).

mod downloads;
mod e2e;
mod fleet;
mod mqtt;
mod mqtt_paths;
mod plot;
mod procs;
mod sweep;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Benchmark Otter against Mosquitto and nginx on the same workloads")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// The otter binary to measure (build it with `cargo build --release -p otter-cli`).
    #[arg(long, default_value = "target/release/otter")]
    otter: PathBuf,
    /// Devices for rows 1 and 2 (at most ~19,000: one process holds 20,000 files).
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Devices for the round-trip row.
    #[arg(long, default_value_t = 200)]
    rtt_clients: usize,
    /// Devices for the end-to-end row (≤ n).
    #[arg(long, default_value_t = 1000)]
    e2e: usize,
    /// Runs of each row; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per timed row (round trips, each wrk run).
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Connection counts for the download rows.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1000")]
    dl_conns: Vec<usize>,
    /// Also write the results table here (markdown).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// (internal) The responder process that answers report_version through Mosquitto.
    Responder {
        #[arg(long)]
        broker: std::net::SocketAddr,
    },
    /// Rows 2 and 5 at several N, with a markdown table and a PNG plot (uses --otter, --secs).
    Sweep(sweep::SweepArgs),
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String, String, String)>,
}

impl Table {
    fn add(&mut self, row: &str, otter: f64, reference: f64, unit: &str, higher_is_better: bool) {
        let ratio = if higher_is_better {
            otter / reference
        } else {
            reference / otter
        };
        let line = (
            row.to_owned(),
            format!("{otter:.2} {unit}"),
            format!("{reference:.2} {unit}"),
            format!("{:.2}", otter / reference),
            format!("{ratio:.2}"),
        );
        println!(
            "{:<44} otter {:>14}  reference {:>14}  otter/ref {:>6}  goodness {:>6}",
            line.0, line.1, line.2, line.3, line.4
        );
        self.rows.push(line);
    }

    fn markdown(&self) -> String {
        let mut s = String::from(
            "| row | Otter | reference | Otter / reference | goodness (≥ 1 is as good as the reference) |\n| --- | --- | --- | --- | --- |\n",
        );
        for r in &self.rows {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} |", r.0, r.1, r.2, r.3, r.4);
        }
        s
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `f` `runs` times; median of its results, and the load generator's CPU use meanwhile.
async fn measure<F, Fut>(runs: usize, mut f: F) -> Result<(f64, f64)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<f64>>,
{
    let mut values = Vec::new();
    let (cpu0, t0) = (procs::own_cpu_secs(), std::time::Instant::now());
    for run in 0..runs {
        values.push(f(run).await?);
    }
    let cpu = (procs::own_cpu_secs() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    Ok((median(values), cpu))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Cmd::Responder { broker }) = args.cmd {
        return mqtt_paths::responder(broker).await;
    }
    let bin = std::fs::canonicalize(&args.otter).with_context(|| {
        format!(
            "{} not found: cargo build --release -p otter-cli",
            args.otter.display()
        )
    })?;
    if let Some(Cmd::Sweep(sweep)) = &args.cmd {
        return sweep::run(&bin, args.secs, sweep).await;
    }
    let data = tempfile::tempdir()?;
    let devices = fleet::devices(args.n);
    let mut table = Table::default();
    let mut notes = Vec::new();
    println!(
        "otter-bench: n={} runs={} (load generator CPU in parentheses; 100% = one core)",
        args.n, args.runs
    );

    // Register the fleet once; every Otter run restarts the server over the same data dir.
    {
        let otter = procs::otter(&bin, data.path())?;
        fleet::Api::new(&otter.http).register(&devices).await?;
    }

    // Rows 1 and 2, Otter.
    let otter_conn = std::cell::RefCell::new(Vec::<f64>::new());
    let otter_mem = std::cell::RefCell::new(Vec::<f64>::new());
    let (otter_fanout, cpu) = measure(args.runs, |run| {
        let (bin, dir, devices) = (&bin, data.path(), &devices);
        let (conn, mem) = (&otter_conn, &otter_mem);
        async move {
            let otter = procs::otter(bin, dir)?;
            let api = fleet::Api::new(&otter.http);
            let held = mqtt_paths::hold(otter.mqtt, devices, otter.proc.pid(), Some(&api)).await?;
            conn.borrow_mut()
                .push(devices.len() as f64 / held.connect_secs);
            mem.borrow_mut().push(held.bytes_per_conn);
            mqtt_paths::fanout_otter(&api, held, devices, run).await
        }
    })
    .await?;
    notes.push(format!("rows 1–2 Otter: load generator CPU {cpu:.0}%"));

    // Rows 1 and 2, Mosquitto.
    let mosq_conn = std::cell::RefCell::new(Vec::<f64>::new());
    let mosq_mem = std::cell::RefCell::new(Vec::<f64>::new());
    let (mosq_fanout, cpu) = measure(args.runs, |_| {
        let devices = &devices;
        let (conn, mem) = (&mosq_conn, &mosq_mem);
        async move {
            let m = procs::mosquitto()?;
            let held = mqtt_paths::hold(m.addr, devices, m.proc.pid(), None).await?;
            conn.borrow_mut()
                .push(devices.len() as f64 / held.connect_secs);
            mem.borrow_mut().push(held.bytes_per_conn);
            mqtt_paths::fanout_mosquitto(m.addr, held, devices).await
        }
    })
    .await?;
    notes.push(format!("rows 1–2 Mosquitto: load generator CPU {cpu:.0}%"));
    let n = args.n;
    table.add(
        &format!("1. connect {n} devices (connections/s)"),
        median(otter_conn.into_inner()),
        median(mosq_conn.into_inner()),
        "conn/s",
        true,
    );
    table.add(
        &format!("1. memory per held connection ({n})"),
        median(otter_mem.into_inner()),
        median(mosq_mem.into_inner()),
        "bytes",
        false,
    );
    table.add(
        &format!("2. fan-out to {n} devices (s)"),
        otter_fanout,
        mosq_fanout,
        "s",
        false,
    );

    // Row 3: round trips.
    let clients = &devices[..args.rtt_clients.min(n)];
    let (mut o_rtt, mut m_rtt) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let otter = procs::otter(&bin, data.path())?;
        o_rtt.push(mqtt_paths::round_trips(otter.mqtt, clients, args.secs as f64).await?);
        drop(otter);
        let m = procs::mosquitto()?;
        let exe = std::env::current_exe()?;
        let responder = procs::Proc::spawn_pub(std::process::Command::new(exe).args([
            "responder",
            "--broker",
            &m.addr.to_string(),
        ]))?;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        m_rtt.push(mqtt_paths::round_trips(m.addr, clients, args.secs as f64).await?);
        drop(responder);
    }
    let pick = |v: &[mqtt_paths::RoundTrips], f: fn(&mqtt_paths::RoundTrips) -> f64| {
        median(v.iter().map(f).collect())
    };
    table.add(
        &format!("3. report round trips, {} clients (per s)", clients.len()),
        pick(&o_rtt, |r| r.per_sec),
        pick(&m_rtt, |r| r.per_sec),
        "rt/s",
        true,
    );
    table.add(
        "3. round trip p50 (ms)",
        pick(&o_rtt, |r| r.p50_ms),
        pick(&m_rtt, |r| r.p50_ms),
        "ms",
        false,
    );
    table.add(
        "3. round trip p99 (ms)",
        pick(&o_rtt, |r| r.p99_ms),
        pick(&m_rtt, |r| r.p99_ms),
        "ms",
        false,
    );

    // Row 4: downloads.
    let root = tempfile::tempdir()?;
    let otter = procs::otter(&bin, data.path())?;
    let nginx = procs::nginx(root.path())?;
    let targets = downloads::prepare(
        &fleet::Api::new(&otter.http),
        otter.mqtt,
        &nginx.url,
        root.path(),
    )
    .await?;
    let mut nginx_1m_rate = f64::NAN;
    for t in &targets {
        for &c in &args.dl_conns {
            let mut o = Vec::new();
            let mut r = Vec::new();
            for _ in 0..args.runs {
                o.push(downloads::wrk(&t.otter_url, c, args.secs, None, root.path())?.1);
                r.push(downloads::wrk(&t.nginx_url, c, args.secs, None, root.path())?.1);
            }
            let (o, r) = (median(o), median(r));
            // The bound's download rate: nginx on the whole 1 MiB file at its best connection count.
            if t.size == 1 << 20 && (nginx_1m_rate.is_nan() || r > nginx_1m_rate) {
                nginx_1m_rate = r;
            }
            table.add(
                &format!("4. whole {} file, {c} connections (MiB/s)", t.name),
                o,
                r,
                "MiB/s",
                true,
            );
        }
    }
    let big = targets.last().context("no download target")?;
    for &c in &args.dl_conns {
        let mut o = Vec::new();
        let mut r = Vec::new();
        for _ in 0..args.runs {
            o.push(downloads::wrk(&big.otter_url, c, args.secs, Some(big.size), root.path())?.0);
            r.push(downloads::wrk(&big.nginx_url, c, args.secs, Some(big.size), root.path())?.0);
        }
        table.add(
            &format!("4. random 64 KiB ranges, {c} connections (req/s)"),
            median(o),
            median(r),
            "req/s",
            true,
        );
    }
    drop(nginx);
    drop(otter);

    // Row 5: end to end, against its bound.
    let e2e_n = args.e2e.min(n);
    let (e2e, cpu) = measure(args.runs, |run| {
        let (bin, dir) = (&bin, data.path());
        async move {
            let otter = procs::otter(bin, dir)?;
            e2e::run(&fleet::Api::new(&otter.http), otter.mqtt, e2e_n, run).await
        }
    })
    .await?;
    notes.push(format!(
        "row 5: load generator (the simulated fleet, downloads included) CPU {cpu:.0}%"
    ));
    let bound = mosq_fanout * e2e_n as f64 / n as f64 + e2e_n as f64 / nginx_1m_rate;
    table.add(
        &format!("5. end to end, {e2e_n} devices × 1 MiB (s) vs bound"),
        e2e,
        bound,
        "s",
        false,
    );

    for note in &notes {
        println!("{note}");
    }
    if let Some(out) = &args.out {
        let mut md = table.markdown();
        md.push('\n');
        for note in &notes {
            let _ = writeln!(md, "- {note}");
        }
        std::fs::write(out, md)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
