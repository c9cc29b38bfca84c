//! The engine's progress events as people see them: one bar per region on a terminal, a
//! timestamped line per step otherwise (CI logs), nothing but warnings and errors with
//! `--quiet`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::Printer;
use crate::engine::events::{Event, Events};
use crate::plan::exec;

pub struct Reporter<'a> {
    printer: &'a Printer,
    bars: MultiProgress,
    by_region: Mutex<BTreeMap<String, ProgressBar>>,
    /// The last tenth of each tally printed as a line (no terminal).
    tallied: Mutex<BTreeMap<String, u64>>,
}

impl<'a> Reporter<'a> {
    pub fn new(printer: &'a Printer) -> Reporter<'a> {
        Reporter {
            printer,
            bars: MultiProgress::new(),
            by_region: Mutex::new(BTreeMap::new()),
            tallied: Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, region: &str) -> Option<ProgressBar> {
        self.by_region
            .lock()
            .ok()
            .and_then(|m| m.get(region).cloned())
    }

    fn start_bar(&self, region: &str, total: u64) {
        if !self.printer.is_tty() {
            return;
        }
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:16} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(region.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut m) = self.by_region.lock() {
            m.insert(region.to_string(), bar);
        }
    }

    fn op(&self, region: &str, event: &exec::Event) {
        let bar = self.bar(region);
        let line = match event {
            exec::Event::Started(op) => {
                if let Some(b) = &bar {
                    b.set_message(format!("{} {}", op.verb().trim_end_matches('d'), op.key()));
                }
                return;
            }
            exec::Event::Done { op, id, took } => format!(
                "{region} {} {} {id} ({:.1}s)",
                op.verb(),
                op.key(),
                took.as_secs_f32()
            ),
            exec::Event::Failed { op, error } => format!(
                "{region} FAILED {} {}: {error}",
                op.verb().trim_end_matches('d'),
                op.key()
            ),
            exec::Event::Skipped { op, because } => format!(
                "{region} skipped {} (needs {because}, which failed)",
                op.key()
            ),
        };
        match bar {
            Some(b) => {
                b.inc(1);
                b.println(line);
            }
            None => self.printer.log_line(&line),
        }
    }
}

impl Reporter<'_> {
    /// A count towards a total: a bar on a terminal; elsewhere a line at every tenth (and
    /// at the end), so a CI log shows the pace without a line per device.
    fn tally(&self, what: &str, done: u64, total: u64) {
        if self.printer.is_tty() {
            if self.bar(what).is_none() {
                self.start_bar(what, total);
            }
            if let Some(b) = self.bar(what) {
                b.set_position(done);
                if done >= total {
                    b.finish_and_clear();
                    if let Ok(mut m) = self.by_region.lock() {
                        m.remove(what);
                    }
                }
            }
            return;
        }
        let step = (total / 10).max(1);
        let mut last = self.tallied.lock().unwrap_or_else(|e| e.into_inner());
        let seen = last.entry(what.to_string()).or_insert(u64::MAX);
        // The last tenth is printed once, at the total.
        let bucket = if done >= total {
            u64::MAX - 1
        } else {
            done / step
        };
        if *seen != bucket {
            *seen = bucket;
            self.printer.log_line(&format!("{what}: {done}/{total}"));
        }
    }
}

impl Events for Reporter<'_> {
    fn emit(&self, event: Event) {
        match event {
            Event::OpsStarted { region, total } => self.start_bar(&region, total),
            Event::Op { region, event } => self.op(&region, &event),
            Event::OpsFinished { region } => {
                let bar = self
                    .by_region
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&region));
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
            }
            Event::Tally { what, done, total } => self.tally(&what, done, total),
            Event::Progress(line) => self.printer.log_line(&line),
            Event::Notice(line) => self.printer.info(&line),
            Event::Done(line) => self.printer.success("done", &line),
            Event::Warning(line) => self.printer.warn(&line),
            Event::RegionFailed(line) => self.printer.error(&line),
        }
    }
}
