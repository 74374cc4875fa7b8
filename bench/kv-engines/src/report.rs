//! The results table: one block per workload, one column per engine, and the
//! ratio of the first engine to the second.

use std::time::Duration;

use crate::engine::EngineKind;
use crate::group_commit::CommitCounts;
use crate::workload::{Figures, Workload};

/// Every round of one workload on one engine.
pub struct Runs {
    /// The workload.
    pub workload: Workload,
    /// One entry per engine, in the order of the columns: its rounds.
    pub rounds: Vec<Vec<Figures>>,
}

/// The rounds of one engine merged into one set of figures: ops and time
/// summed, latencies pooled.
fn combine(rounds: &[Figures]) -> Figures {
    let mut total = Figures::default();
    for round in rounds {
        total.ops += round.ops;
        total.elapsed += round.elapsed;
        if let Some(counts) = round.commits {
            let sum = total.commits.get_or_insert_with(CommitCounts::default);
            sum.commits += counts.commits;
            sum.ops += counts.ops;
            sum.busy += counts.busy;
        }
        total.latencies.extend_from_slice(&round.latencies);
    }
    total.latencies.sort_unstable();
    total
}

const LABEL: usize = 30;
const CELL: usize = 19;

/// Prints the table for `engines` (the columns) and `runs`.
pub fn print_table(engines: &[EngineKind], runs: &[Runs]) {
    let ratio_title = match engines {
        [first, second, ..] => format!("{first}/{second}"),
        _ => String::new(),
    };
    print!("{:<LABEL$}", "");
    for engine in engines {
        print!("{:>CELL$}", engine.name());
    }
    println!("{ratio_title:>CELL$}");
    for run in runs {
        println!("{}", run.workload.title());
        let totals: Vec<Figures> = run.rounds.iter().map(|rounds| combine(rounds)).collect();
        let ops_per_sec = |f: &Figures| Some(f.ops_per_sec());
        row("ops/s", &metric(&totals, ops_per_sec), show_count);
        let round_count = run.rounds.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..round_count {
            let each: Vec<Option<f64>> = run
                .rounds
                .iter()
                .map(|rounds| rounds.get(round).and_then(ops_per_sec))
                .collect();
            row(&format!("  round {}", round + 1), &each, show_count);
        }
        if totals.iter().all(|f| f.commits.is_none()) {
            continue;
        }
        let batch = metric(&totals, Figures::avg_batch);
        row("avg batch (ops/commit)", &batch, |v| format!("{v:.2}"));
        let commit = metric(&totals, |f| f.avg_commit().map(ms));
        row("avg apply+commit", &commit, show_ms);
        row(
            "p50 latency",
            &metric(&totals, |f| f.percentile(50).map(ms)),
            show_ms,
        );
        row(
            "p99 latency",
            &metric(&totals, |f| f.percentile(99).map(ms)),
            show_ms,
        );
    }
}

fn metric(totals: &[Figures], value: impl Fn(&Figures) -> Option<f64>) -> Vec<Option<f64>> {
    totals.iter().map(value).collect()
}

fn show_count(value: f64) -> String {
    format!("{value:.0}")
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn show_ms(value: f64) -> String {
    format!("{value:.3} ms")
}

/// One metric across the engines, then the first engine's value over the
/// second's.
fn row(label: &str, values: &[Option<f64>], show: impl Fn(f64) -> String) {
    print!("  {label:<width$}", width = LABEL - 2);
    for value in values {
        let cell = value.map_or_else(|| "-".to_owned(), &show);
        print!("{cell:>CELL$}");
    }
    if let [Some(first), Some(second), ..] = values[..] {
        print!("{:>CELL$}", format!("{:.2}", first / second));
    }
    println!();
}
