//! `otter-bench sweep`: rows 2 (fan-out) and 5 (end to end) at several fleet sizes in one run,
//! Otter beside its reference at each N, written as a markdown table and a PNG plot (issue
//! "Performance": how the times grow with N, not one point).

use crate::plot::{self, Line};
use crate::{downloads, e2e, fleet, measure, median, mqtt_paths, procs};
use anyhow::{Result, bail};
use plotters::style::RGBColor;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Fleet sizes (at most ~19,000: one process holds 20,000 open files).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,19000")]
    ns: Vec<usize>,
    /// Runs at each N; medians are reported (the top-level --runs is for the full table).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The table (markdown), rewritten after each N.
    #[arg(long, default_value = "sweep.md")]
    out: PathBuf,
    /// The plot (PNG), rewritten after each N.
    #[arg(long, default_value = "bench-sweep.png")]
    png: PathBuf,
}

/// The medians at one N.
struct Point {
    n: usize,
    otter_fanout: f64,
    mosq_fanout: f64,
    e2e: f64,
    /// Mosquitto's fan-out at this N plus N MiB at nginx's rate.
    bound: f64,
}

/// Runs the sweep: registers the largest fleet once, measures nginx's 1 MiB rate once (wrk, 64
/// connections, `secs` seconds a run), then at each N the two fan-outs and the end to end.
pub async fn run(bin: &Path, secs: u64, args: &SweepArgs) -> Result<()> {
    let Some(&largest) = args.ns.iter().max() else {
        bail!("--ns is empty");
    };
    if args.runs == 0 || args.ns.contains(&0) {
        bail!("--runs and every N must be at least 1");
    }
    let data = tempfile::tempdir()?;
    {
        let otter = procs::otter(bin, data.path())?;
        fleet::Api::new(&otter.http)
            .register(&fleet::devices(largest))
            .await?;
    }
    let rate = nginx_rate(secs, args.runs)?;
    println!("otter-bench sweep: N = {:?}, runs = {}", args.ns, args.runs);
    println!(
        "nginx, whole 1 MiB file, 64 connections: {rate:.0} MiB/s (the bound's download rate)"
    );
    let (mut points, mut notes) = (Vec::new(), Vec::new());
    for (i, &n) in args.ns.iter().enumerate() {
        // Each Otter run uploads a new version: ids must not repeat across the sweep.
        let first_id = i * args.runs;
        let (point, cpu) = at(bin, data.path(), n, args.runs, first_id, rate).await?;
        println!(
            "N={n}: fan-out Otter {:.2} s, Mosquitto {:.2} s; end to end {:.2} s, bound {:.2} s",
            point.otter_fanout, point.mosq_fanout, point.e2e, point.bound
        );
        notes.push(format!(
            "N={n}: load generator CPU: fan-out Otter {:.0}%, Mosquitto {:.0}%, end to end {:.0}%",
            cpu[0], cpu[1], cpu[2]
        ));
        points.push(point);
        write_outputs(args, &points, &notes, rate)?;
    }
    println!("wrote {} and {}", args.out.display(), args.png.display());
    Ok(())
}

/// One N: Otter fan-out, Mosquitto fan-out, Otter end to end; with the load generator's CPU
/// use (percent of one core) during each.
async fn at(
    bin: &Path,
    dir: &Path,
    n: usize,
    runs: usize,
    first_id: usize,
    rate: f64,
) -> Result<(Point, [f64; 3])> {
    let devices = fleet::devices(n);
    let (otter_fanout, cpu_o) = measure(runs, |run| {
        let devices = &devices;
        async move {
            let otter = procs::otter(bin, dir)?;
            let api = fleet::Api::new(&otter.http);
            let held = mqtt_paths::hold(otter.mqtt, devices, otter.proc.pid(), Some(&api)).await?;
            mqtt_paths::fanout_otter(&api, held, devices, first_id + run).await
        }
    })
    .await?;
    let (mosq_fanout, cpu_m) = measure(runs, |_| {
        let devices = &devices;
        async move {
            let m = procs::mosquitto()?;
            let held = mqtt_paths::hold(m.addr, devices, m.proc.pid(), None).await?;
            mqtt_paths::fanout_mosquitto(m.addr, held, devices).await
        }
    })
    .await?;
    drop(devices);
    let (e2e, cpu_e) = measure(runs, |run| async move {
        let otter = procs::otter(bin, dir)?;
        e2e::run(&fleet::Api::new(&otter.http), otter.mqtt, n, first_id + run).await
    })
    .await?;
    let point = Point {
        n,
        otter_fanout,
        mosq_fanout,
        e2e,
        bound: mosq_fanout + n as f64 / rate,
    };
    Ok((point, [cpu_o, cpu_m, cpu_e]))
}

/// nginx (sendfile) serving a whole 1 MiB file to wrk at 64 connections, MiB/s, median of runs.
fn nginx_rate(secs: u64, runs: usize) -> Result<f64> {
    let root = tempfile::tempdir()?;
    let bytes: Vec<u8> = (0..1u64 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(root.path().join("f1m.bin"), bytes)?;
    let nginx = procs::nginx(root.path())?;
    let url = format!("{}/f1m.bin", nginx.url);
    let rates = (0..runs)
        .map(|_| Ok(downloads::wrk(&url, 64, secs, None, root.path())?.1))
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(rates))
}

fn write_outputs(args: &SweepArgs, points: &[Point], notes: &[String], rate: f64) -> Result<()> {
    std::fs::write(&args.out, markdown(points, notes, rate, args.runs))?;
    plot::write_png(
        &args.png,
        "Otter vs reference: fan-out and end to end (1 MiB image)",
        &lines(points),
    )
}

fn markdown(points: &[Point], notes: &[String], rate: f64, runs: usize) -> String {
    let mut s = String::from(
        "| N | Otter fan-out (s) | Mosquitto fan-out (s) | Otter / Mosquitto | Otter end to end (s) | bound (s) | Otter / bound |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            p.n,
            p.otter_fanout,
            p.mosq_fanout,
            p.otter_fanout / p.mosq_fanout,
            p.e2e,
            p.bound,
            p.e2e / p.bound
        );
    }
    let _ = writeln!(
        s,
        "\n- medians of {runs} run(s) at each N; bound = Mosquitto's fan-out at N + N MiB at nginx's whole-1-MiB rate ({rate:.0} MiB/s, wrk, 64 connections)"
    );
    for note in notes {
        let _ = writeln!(s, "- {note}");
    }
    s
}

fn lines(points: &[Point]) -> Vec<Line> {
    const OTTER: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
    const E2E: RGBColor = RGBColor(0xd6, 0x27, 0x28);
    let series = |label: &str, color, dashed, y: fn(&Point) -> f64| Line {
        label: label.into(),
        points: points.iter().map(|p| (p.n as f64, y(p))).collect(),
        color,
        dashed,
    };
    vec![
        series("Otter fan-out", OTTER, false, |p| p.otter_fanout),
        series("Mosquitto fan-out", OTTER, true, |p| p.mosq_fanout),
        series("Otter end to end", E2E, false, |p| p.e2e),
        series("end-to-end bound", E2E, true, |p| p.bound),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_row_per_n_with_ratios() {
        let p = |n, f| Point {
            n,
            otter_fanout: f * 4.0,
            mosq_fanout: f,
            e2e: 10.0,
            bound: 2.0,
        };
        let md = markdown(&[p(1000, 0.5), p(5000, 1.0)], &[], 1024.0, 1);
        assert!(
            md.contains("| 1000 | 2.00 | 0.50 | 4.00 | 10.00 | 2.00 | 5.00 |"),
            "{md}"
        );
        assert!(md.contains("| 5000 | 4.00 | 1.00 | 4.00 |"), "{md}");
        assert_eq!(lines(&[p(1000, 0.5)]).len(), 4);
    }
}
