//! Progress events. The engine emits them and never prints; the CLI decides
//! how to show them (bars on a terminal, plain lines in CI logs, nothing).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use registry_client::Digest;

use crate::report::{BlobOutcome, ImageReport};

#[derive(Debug, Clone)]
pub enum Event {
    /// A plan was compared: this many images, and what each needs.
    Planned {
        images: usize,
        current: usize,
        to_copy: usize,
        failed: usize,
        seconds: f64,
    },
    /// An image's copy began.
    ImageStarted {
        image: usize,
        source: String,
        target: String,
    },
    /// Its manifests are read: this many blobs and bytes are referenced.
    ImagePlanned {
        image: usize,
        blobs: usize,
        bytes: u64,
        /// Each of those blobs' digest and size, so a blob several images
        /// share is counted once in a run's total.
        sizes: Vec<(Digest, u64)>,
    },
    /// Bytes of a blob began to move.
    BlobStarted {
        image: usize,
        digest: Digest,
        size: u64,
    },
    /// More bytes of a blob moved.
    BlobProgress {
        image: usize,
        digest: Digest,
        bytes: u64,
    },
    /// A blob is at the target (moved, found, or mounted).
    BlobFinished {
        image: usize,
        digest: Digest,
        size: u64,
        outcome: BlobOutcome,
    },
    /// An image is done, successfully or not.
    ImageFinished {
        image: usize,
        report: Box<ImageReport>,
    },
}

/// Receives events. Called from many tasks at once; keep it quick.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event) {}
}

/// A run's totals as the events tell them, for a display to show: each
/// distinct blob counted once however many images share it, and a blob the
/// target turns out to hold (or mounts) dropped from what is left to move,
/// so when the run ends the bytes to move equal the report's bytes moved.
#[derive(Default)]
pub struct Tally {
    state: Mutex<TallyState>,
}

#[derive(Default)]
struct TallyState {
    /// Blobs planned that no image has begun to move or finished yet: their
    /// size, and the images that want them.
    waiting: HashMap<Digest, (u64, Vec<usize>)>,
    /// Blobs moving now, by image: their size and the bytes moved so far.
    moving: HashMap<(usize, Digest), (u64, u64)>,
    /// Every blob planned, and those at the target, by digest.
    planned: HashSet<Digest>,
    placed: HashSet<Digest>,
    /// The sizes of the blobs copied (as the report counts them).
    copied: u64,
    /// Bytes that crossed the wire, retries included: for the rate.
    streamed: u64,
    first_byte: Option<Instant>,
}

/// What a [`Tally`] holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Distinct blobs at the target (moved, found or mounted), of those
    /// planned.
    pub blobs_done: usize,
    pub blobs: usize,
    /// Bytes moved, of the bytes this run moves (as far as it knows yet).
    pub bytes_done: u64,
    pub bytes: u64,
    /// Bytes a second since the first byte moved.
    pub rate: f64,
    /// At that rate, how long what is left takes; `None` while nothing has
    /// moved and something is left.
    pub eta: Option<Duration>,
}

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count an event.
    pub fn record(&self, event: &Event) {
        let mut s = self.state.lock().expect("tally");
        match event {
            Event::ImagePlanned { image, sizes, .. } => {
                for (digest, size) in sizes {
                    s.planned.insert(digest.clone());
                    let started =
                        s.placed.contains(digest) || s.moving.keys().any(|(_, d)| d == digest);
                    if !started {
                        s.waiting
                            .entry(digest.clone())
                            .or_insert((*size, Vec::new()))
                            .1
                            .push(*image);
                    }
                }
            }
            Event::BlobStarted {
                image,
                digest,
                size,
            } => {
                s.waiting.remove(digest);
                // A retry starts the blob again.
                s.moving.insert((*image, digest.clone()), (*size, 0));
                s.first_byte.get_or_insert_with(Instant::now);
            }
            Event::BlobProgress {
                image,
                digest,
                bytes,
            } => {
                s.streamed += bytes;
                if let Some((_, moved)) = s.moving.get_mut(&(*image, digest.clone())) {
                    *moved += bytes;
                }
            }
            Event::BlobFinished {
                image,
                digest,
                size,
                outcome,
            } => {
                s.waiting.remove(digest);
                s.moving.remove(&(*image, digest.clone()));
                s.placed.insert(digest.clone());
                if *outcome == BlobOutcome::Copied {
                    s.copied += size;
                }
            }
            Event::ImageFinished { image, .. } => {
                // A failed image's broken transfers move nothing more, and
                // the blobs only it wanted are not moved.
                s.moving.retain(|(i, _), _| i != image);
                s.waiting.retain(|_, (_, images)| {
                    images.retain(|i| i != image);
                    !images.is_empty()
                });
            }
            Event::Planned { .. } | Event::ImageStarted { .. } => {}
        }
    }

    pub fn totals(&self) -> Totals {
        let s = self.state.lock().expect("tally");
        let moving_done: u64 = s
            .moving
            .values()
            .map(|(size, moved)| (*moved).min(*size))
            .sum();
        let moving_size: u64 = s.moving.values().map(|(size, _)| size).sum();
        let waiting: u64 = s.waiting.values().map(|(size, _)| size).sum();
        let bytes_done = s.copied + moving_done;
        let bytes = s.copied + moving_size + waiting;
        let rate = match s.first_byte {
            Some(t) => s.streamed as f64 / t.elapsed().as_secs_f64().max(0.001),
            None => 0.0,
        };
        let left = bytes - bytes_done;
        let eta = if left == 0 {
            Some(Duration::ZERO)
        } else if rate > 0.0 {
            Some(Duration::from_secs_f64(left as f64 / rate))
        } else {
            None
        };
        Totals {
            blobs_done: s.placed.len(),
            blobs: s.planned.len(),
            bytes_done,
            bytes,
            rate,
            eta,
        }
    }
}

/// A duration as an ETA shows it: `0s`, `42s`, `3m05s`, `2h07m`; `unknown`
/// for none.
pub fn eta_text(eta: Option<Duration>) -> String {
    let Some(d) = eta else {
        return "unknown".into();
    };
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn planned(image: usize, blobs: &[(u8, u64)]) -> Event {
        Event::ImagePlanned {
            image,
            blobs: blobs.len(),
            bytes: blobs.iter().map(|(_, s)| s).sum(),
            sizes: blobs.iter().map(|(n, s)| (d(*n), *s)).collect(),
        }
    }

    fn finished(image: usize, n: u8, size: u64, outcome: BlobOutcome) -> Event {
        Event::BlobFinished {
            image,
            digest: d(n),
            size,
            outcome,
        }
    }

    #[test]
    fn a_shared_blob_counts_once_and_a_present_one_not_at_all() {
        let t = Tally::new();
        t.record(&planned(0, &[(1, 100), (2, 10)]));
        t.record(&planned(1, &[(1, 100), (3, 20)]));
        assert_eq!((t.totals().bytes, t.totals().blobs), (130, 3));
        t.record(&Event::BlobStarted {
            image: 0,
            digest: d(1),
            size: 100,
        });
        t.record(&Event::BlobProgress {
            image: 0,
            digest: d(1),
            bytes: 40,
        });
        assert_eq!(t.totals().bytes_done, 40);
        assert!(t.totals().eta.is_some());
        t.record(&finished(0, 1, 100, BlobOutcome::Copied));
        t.record(&finished(1, 1, 100, BlobOutcome::Present));
        t.record(&finished(1, 3, 20, BlobOutcome::Present));
        let now = t.totals();
        assert_eq!((now.bytes_done, now.bytes, now.blobs_done), (100, 110, 2));
        t.record(&finished(0, 2, 10, BlobOutcome::Copied));
        let end = t.totals();
        assert_eq!((end.bytes_done, end.bytes), (110, 110));
        assert_eq!(end.eta, Some(Duration::ZERO));
    }

    #[test]
    fn a_failed_image_leaves_nothing_to_move() {
        let t = Tally::new();
        t.record(&planned(0, &[(1, 100), (2, 10)]));
        t.record(&Event::BlobStarted {
            image: 0,
            digest: d(1),
            size: 100,
        });
        assert_eq!(t.totals().eta, None, "nothing moved yet");
        t.record(&Event::ImageFinished {
            image: 0,
            report: Box::default(),
        });
        assert_eq!(t.totals().bytes, 0);
    }

    #[test]
    fn etas_read_as_people_say_them() {
        assert_eq!(eta_text(None), "unknown");
        assert_eq!(eta_text(Some(Duration::ZERO)), "0s");
        assert_eq!(eta_text(Some(Duration::from_millis(41_200))), "42s");
        assert_eq!(eta_text(Some(Duration::from_secs(185))), "3m05s");
        assert_eq!(eta_text(Some(Duration::from_secs(7620))), "2h07m");
    }
}
