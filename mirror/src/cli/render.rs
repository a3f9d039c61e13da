//! Shows progress events: indicatif bars on a terminal, plain lines every
//! few seconds otherwise (CI logs; `--progress bars` falls back to them
//! and says so), or nothing. Also the text summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use registry_client::Digest;

use super::out::say;
use super::ProgressMode;
use mirror::progress::{eta_text, Event, Progress, Tally};
use mirror::report::RunReport;

const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Renderer {
    mode: Mode,
    /// Images to copy (set again when a plan is announced).
    images: AtomicUsize,
    /// Print a line when a plan is compared (`sync`).
    announce_plan: bool,
    done: AtomicUsize,
    failed: AtomicUsize,
    /// Blobs and bytes, each distinct blob once.
    tally: Tally,
}

enum Mode {
    None,
    Plain,
    Bars(Bars),
}

struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    /// Each running image's line, and the name it shows.
    images: Mutex<HashMap<usize, (ProgressBar, String)>>,
    blobs: Mutex<HashMap<(usize, Digest), ProgressBar>>,
}

impl Renderer {
    pub fn new(mode: ProgressMode, images: usize) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let mode = match mode {
            ProgressMode::None => Mode::None,
            ProgressMode::Plain => Mode::Plain,
            ProgressMode::Auto if !terminal => Mode::Plain,
            ProgressMode::Bars if !terminal => {
                // indicatif draws nothing off a terminal: a whole run
                // would pass in silence.
                say!("progress: standard error is not a terminal; showing plain lines instead of bars");
                Mode::Plain
            }
            ProgressMode::Auto | ProgressMode::Bars => Mode::Bars(Bars::new()),
        };
        Renderer {
            mode,
            images: AtomicUsize::new(images),
            announce_plan: false,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            tally: Tally::new(),
        }
    }

    /// Print a line when the plan is compared: how many images, and what
    /// each needs.
    pub fn announcing_plan(mut self) -> Self {
        self.announce_plan = true;
        self
    }

    /// In plain mode, a line every few seconds while the run lasts.
    pub fn start_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            if !matches!(me.mode, Mode::Plain) {
                return;
            }
            let mut tick = tokio::time::interval(PLAIN_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                say!("{}", me.status_line());
            }
        })
    }

    fn status_line(&self) -> String {
        let t = self.tally.totals();
        format!(
            "progress: {}/{} images done ({} failed), {}/{} blobs, {} of {} moved, {}/s, ETA {}",
            self.done.load(Ordering::Relaxed),
            self.images.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            t.blobs_done,
            t.blobs,
            human_bytes(t.bytes_done),
            human_bytes(t.bytes),
            human_bytes(t.rate as u64),
            eta_text(t.eta)
        )
    }

    /// Clear the bars; in plain mode, the last line with the run's totals
    /// (when there was anything to copy).
    pub fn finish(&self) {
        match &self.mode {
            Mode::Bars(b) => {
                b.total.finish_and_clear();
                let _ = b.multi.clear();
            }
            Mode::Plain if self.images.load(Ordering::Relaxed) > 0 => {
                say!("{}", self.status_line())
            }
            Mode::Plain | Mode::None => {}
        }
    }
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .expect("static template"),
        );
        Bars {
            multi,
            total,
            images: Mutex::default(),
            blobs: Mutex::default(),
        }
    }
}

impl Progress for Renderer {
    fn event(&self, event: Event) {
        self.tally.record(&event);
        match &event {
            Event::Planned {
                images,
                current,
                to_copy,
                failed,
                seconds,
            } => {
                self.images.store(*to_copy, Ordering::Relaxed);
                if self.announce_plan && !matches!(self.mode, Mode::None) {
                    say!(
                        "planned: {images} images, {current} current, {to_copy} to copy, {failed} failed ({seconds:.1}s)"
                    );
                }
            }
            Event::ImageFinished { report, .. } => {
                self.done.fetch_add(1, Ordering::Relaxed);
                if !report.succeeded() {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        match &self.mode {
            Mode::None => {}
            Mode::Plain => {
                if let Event::ImageFinished { report, .. } = &event {
                    match &report.error {
                        None => say!(
                            "done: {} → {} ({} copied, {} present, {} mounted, {}, {:.1}s)",
                            report.source,
                            report.target,
                            report.blobs_copied,
                            report.blobs_present,
                            report.blobs_mounted,
                            human_bytes(report.bytes_copied),
                            report.seconds
                        ),
                        Some(e) => say!("FAILED: {} → {}: {e}", report.source, report.target),
                    }
                }
            }
            Mode::Bars(b) => {
                let t = self.tally.totals();
                b.total.set_length(t.bytes);
                b.total.set_position(t.bytes_done);
                self.draw(b, event)
            }
        }
    }
}

impl Renderer {
    fn draw(&self, b: &Bars, event: Event) {
        match event {
            Event::ImageStarted { image, source, .. } => {
                let bar = b.multi.insert_before(&b.total, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(format!("{source}: reading manifests"));
                b.images.lock().expect("bars").insert(image, (bar, source));
            }
            Event::ImagePlanned {
                image,
                blobs,
                bytes,
                ..
            } => {
                if let Some((bar, name)) = b.images.lock().expect("bars").get(&image) {
                    bar.set_message(format!("{name}: {blobs} blobs, {}", human_bytes(bytes)));
                }
            }
            Event::BlobStarted {
                image,
                digest,
                size,
            } => {
                let bar = b.multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("  {prefix} {bar:20} {bytes}/{total_bytes}")
                        .expect("static template"),
                );
                bar.set_prefix(short(&digest));
                b.blobs.lock().expect("bars").insert((image, digest), bar);
            }
            Event::BlobProgress {
                image,
                digest,
                bytes,
            } => {
                if let Some(bar) = b.blobs.lock().expect("bars").get(&(image, digest)) {
                    bar.inc(bytes);
                }
            }
            Event::BlobFinished { image, digest, .. } => {
                if let Some(bar) = b.blobs.lock().expect("bars").remove(&(image, digest)) {
                    bar.finish_and_clear();
                    b.multi.remove(&bar);
                }
            }
            Event::ImageFinished { image, report } => {
                if let Some((bar, _)) = b.images.lock().expect("bars").remove(&image) {
                    let line = match &report.error {
                        None => format!("✓ {} → {}", report.source, report.target),
                        Some(e) => format!("✗ {} → {}: {e}", report.source, report.target),
                    };
                    bar.finish_and_clear();
                    b.multi.remove(&bar);
                    let _ = b.multi.println(line);
                }
            }
            Event::Planned { .. } => {}
        }
    }
}

/// The text report: one line per image, then totals.
pub fn summary(report: &RunReport) -> String {
    let mut out = String::new();
    for i in &report.images {
        match &i.error {
            None if i.current => {
                let digest = i
                    .target_digest
                    .as_ref()
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                out += &format!("current {} → {} {digest}\n", i.source, i.target);
            }
            None => {
                let digest = i
                    .target_digest
                    .as_ref()
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                out += &format!(
                    "ok      {} → {} {digest} (copied {}, present {}, mounted {}; {} in {:.1}s)\n",
                    i.source,
                    i.target,
                    i.blobs_copied,
                    i.blobs_present,
                    i.blobs_mounted,
                    human_bytes(i.bytes_copied),
                    i.seconds
                );
                if let Some(why) = &i.digest_changed {
                    out += &format!("        note: digest changed: {why}\n");
                }
            }
            Some(e) => out += &format!("FAILED  {} → {}: {e}\n", i.source, i.target),
        }
    }
    let current = report.images.iter().filter(|i| i.current).count();
    let current = if current > 0 {
        format!(" ({current} already current)")
    } else {
        String::new()
    };
    out += &format!(
        "{} images: {} done{current}, {} failed; {} moved in {:.1}s\n",
        report.images.len(),
        report.succeeded,
        report.failed,
        human_bytes(report.bytes_copied),
        report.seconds
    );
    out
}

fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm().name(), &d.hex()[..12])
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
