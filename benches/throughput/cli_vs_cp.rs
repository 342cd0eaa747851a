//! `cli`: the CLI's `put` and `get` against `cp`.

use std::process::Command;
use std::time::Instant;

use crate::common::full_run;
use crate::common::stats::median;
use crate::{MIB, stream_bytes};

fn cli_vs_cp() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let size = stream_bytes();
    let file = dir.path().join("volume.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk = vec![0x33u8; MIB as usize];
        for _ in 0..size / MIB {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    let exe = env!("CARGO_BIN_EXE_maskstore");
    let run = |program: &str, args: &[&str]| {
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{program} {args:?}");
        started.elapsed()
    };
    run(exe, &["put", "volume.bin", "mask/bench/volume.bin"]);
    let commands: [(&str, &str, &[&str]); 5] = [
        ("cp", "cp", &["volume.bin", "out.bin"]),
        // `maskstore get` syncs the file before linking it into place; cp doing the same.
        (
            "cp, then sync of the copy",
            "sh",
            &["-c", "cp volume.bin out.bin && sync out.bin"],
        ),
        (
            "maskstore put (local, fsync)",
            exe,
            &["put", "volume.bin", "mask/bench/put.bin"],
        ),
        (
            "maskstore get (local, synced)",
            exe,
            &["get", "mask/bench/volume.bin", "out.bin"],
        ),
        (
            "maskstore get --no-sync (local)",
            exe,
            &["get", "--no-sync", "mask/bench/volume.bin", "out.bin"],
        ),
    ];
    // Rounds in rotating order. Before every command its output is removed and the disk
    // settled (`sync`, untimed), so no command pays for the write-back another left
    // behind and every one writes a new file, as a first copy does.
    let rounds = if full_run() { 5 } else { 1 };
    let mut taken: Vec<Vec<f64>> = vec![Vec::new(); commands.len()];
    for round in 0..rounds {
        for i in 0..commands.len() {
            let which = (i + round) % commands.len();
            let _ = std::fs::remove_file(dir.path().join("out.bin"));
            run(exe, &["rm", "mask/bench/put.bin"]);
            run("sync", &[]);
            let (_, program, args) = commands[which];
            taken[which].push(run(program, args).as_secs_f64());
        }
    }
    let mibs = |secs: f64| size as f64 / MIB as f64 / secs;
    let medians: Vec<f64> = taken.iter_mut().map(|t| median(t)).collect();
    commands
        .iter()
        .zip(&taken)
        .zip(&medians)
        .map(|(((command, _, _), times), &median)| {
            let slowest = times.iter().copied().fold(0.0, f64::max);
            let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
            format!(
                "| {command} | {:.0} MiB/s [{:.0} … {:.0}] | {:.0} % |",
                mibs(median),
                mibs(slowest),
                mibs(fastest),
                mibs(median) / mibs(medians[0]) * 100.0
            )
        })
        .collect()
}

/// Prints the `cli` section.
pub fn print() {
    println!(
        "\n## CLI vs cp, {} MiB on local disk (median over rounds [slowest … fastest])\n",
        stream_bytes() / MIB
    );
    println!("| command | throughput | vs cp |\n|---|---|---|");
    for row in cli_vs_cp() {
        println!("{row}");
    }
}
