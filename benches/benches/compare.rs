//! `cargo bench -p mirror-benches [-- OPTIONS]`: mirror, its peers and the
//! raw limit, side by side on two real local registries, on loopback and
//! through WAN profiles. See `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mirror_benches::copier::{build_mirror, Contender, Copier, Job};
use mirror_benches::scenario::{
    prepare, prepare_update, source_storage, Image, Prepared, Scenario, Update, HUGE_REPOSITORIES,
    HUGE_TAGS_PER_REPOSITORY,
};
use mirror_benches::shaper::{Link, Shaper, WanProfile};
use mirror_benches::table::{Key, Results};
use mirror_benches::{chart, limit, measure, peers, seed};
use mirror_tests::fixtures::push_layout;
use mirror_tests::images::client;
use mirror_tests::{Registry, RegistryOptions, TestCa};

#[derive(Debug, Parser)]
#[command(about = "mirror against its peers and the raw limit, measured in one run")]
struct Args {
    /// Scenarios to run (repeatable; default: azureml, big, many; huge and
    /// big8g run when named).
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Phases: cold (empty target), rerun (nothing changed), update
    /// (azureml: one tag gained a layer; huge: one percent of the tags
    /// changed).
    #[arg(long = "phase", value_enum)]
    phases: Vec<Phase>,
    /// Contenders (repeatable; default: all, less the peers that are not
    /// installed, and skopeo copy on huge: a process per tag).
    #[arg(long = "copier", value_enum)]
    copiers: Vec<Copier>,
    /// Measured runs of each contender per scenario, profile and phase.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A WAN profile, RTT,RATE (repeatable, or comma-separated pairs
    /// `40ms,1gbit,100ms,200mbit`): a shaping proxy between every
    /// contender and each registry adds RTT/2 each way and caps each
    /// direction at RATE, shared by all connections. Loopback runs too,
    /// first, unless --no-loopback.
    #[arg(long = "wan", value_name = "RTT,RATE", value_parser = wan_list)]
    wan: Vec<Vec<WanProfile>>,
    /// Only the WAN profiles.
    #[arg(long)]
    no_loopback: bool,
    /// Sizes of the huge scenario, in tags (repeatable; multiples of 10 up
    /// to 10000): the first N/10 repositories, ten tags each.
    #[arg(long = "huge-tags", value_name = "N", value_parser = huge_tags)]
    huge_tags: Vec<usize>,
    /// Where the table is written; the chart goes beside it (`.svg`).
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
    /// Where generated scenarios and their registries are kept between runs.
    #[arg(long, default_value = "target/bench/fixtures")]
    cache: PathBuf,
    /// An extra argument for mirror's runs (repeatable), to compare
    /// settings: `--mirror-arg=--jobs=4`. Named in the table's header.
    #[arg(long = "mirror-arg", value_name = "ARG", allow_hyphen_values = true)]
    mirror_args: Vec<String>,
    /// Also run `mirror copy` with other settings, in the same rotation as
    /// the rest (repeatable): `--variant 'jobs 4=--jobs 4'`. Its row is
    /// `mirror [jobs 4]`.
    #[arg(long = "variant", value_name = "LABEL=ARGS", value_parser = Contender::variant, allow_hyphen_values = true)]
    variants: Vec<Contender>,
    /// Also run `mirror copy` of another build, in the same rotation
    /// (repeatable): `--build 'main=/tmp/mirror-main'` measures a change
    /// against the code before it. Its row is `mirror [main]`.
    #[arg(long = "build", value_name = "LABEL=PATH [ARGS]", value_parser = Contender::build, allow_hyphen_values = true)]
    builds: Vec<Contender>,
    /// Both registries speak TLS (HTTP/2 is then negotiated); the raw
    /// limit speaks plain HTTP only and is left out.
    #[arg(long)]
    tls: bool,
    /// The mirror binary to measure (default: `target/release/mirror`,
    /// built now), so several invocations measure one build.
    #[arg(long, value_name = "PATH")]
    mirror_bin: Option<PathBuf>,
    /// (cargo bench passes this)
    #[arg(long, hide = true)]
    bench: bool,
}

/// `40ms,1gbit` or several pairs in one list.
fn wan_list(s: &str) -> Result<Vec<WanProfile>, String> {
    let parts: Vec<&str> = s.split(',').collect();
    if !parts.len().is_multiple_of(2) {
        return Err(format!(
            "{s:?}: use RTT,RATE pairs, e.g. 40ms,1gbit,100ms,200mbit"
        ));
    }
    parts
        .chunks(2)
        .map(|p| format!("{},{}", p[0], p[1]).parse())
        .collect()
}

fn huge_tags(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let max = HUGE_REPOSITORIES * HUGE_TAGS_PER_REPOSITORY;
    if n == 0 || n > max || !n.is_multiple_of(HUGE_TAGS_PER_REPOSITORY) {
        return Err(format!(
            "{n}: a multiple of {HUGE_TAGS_PER_REPOSITORY} up to {max}"
        ));
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Phase {
    Cold,
    Rerun,
    Update,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    // The measuring wrapper must stay small: decide before anything else.
    if argv.get(1).map(String::as_str) == Some("measure") {
        std::process::exit(measure::measure_main(&argv[2..])?);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // The limit runs as a child process of this binary, measured like the others.
    if argv.get(1).map(String::as_str) == Some("limit") {
        let plan = serde_json::from_slice(&std::fs::read(&argv[2])?)?;
        return runtime.block_on(limit::run(plan));
    }
    let mut args = Args::parse();
    if args.scenarios.is_empty() {
        args.scenarios = vec![Scenario::Azureml, Scenario::Big, Scenario::Many];
    }
    if args.phases.is_empty() {
        args.phases = vec![Phase::Cold, Phase::Rerun, Phase::Update];
    }
    // Cold first: the rerun and update phases set their targets up anew.
    args.phases.sort();
    args.phases.dedup();
    if args.huge_tags.is_empty() {
        args.huge_tags = vec![HUGE_REPOSITORIES * HUGE_TAGS_PER_REPOSITORY];
    }
    let mut notes = Vec::new();
    let explicit = !args.copiers.is_empty();
    if !explicit {
        args.copiers = vec![
            Copier::Mirror,
            Copier::MirrorSync,
            Copier::SkopeoSync,
            Copier::SkopeoCopy,
            Copier::Crane,
            Copier::Regsync,
            Copier::Limit,
        ];
    }
    args.copiers.retain(|c| match c.peer_binary() {
        Some(bin) if peers::find(bin).is_none() => {
            notes.push(format!(
                "{} left out: `{bin}` is on neither PATH nor {} (../shared/peers/README.md builds it).",
                c.name(),
                peers::PEERS_BIN
            ));
            false
        }
        _ => true,
    });
    if args.tls {
        args.copiers.retain(|c| *c != Copier::Limit);
    }
    let mut profiles: Vec<Option<WanProfile>> = Vec::new();
    if !args.no_loopback {
        profiles.push(None);
    }
    for p in args.wan.iter().flatten() {
        if !profiles.contains(&Some(*p)) {
            profiles.push(Some(*p));
        }
    }
    anyhow::ensure!(!profiles.is_empty(), "--no-loopback needs a --wan profile");
    let root = mirror_tests::cli::workspace_root();
    let (out, cache) = (root.join(&args.out), root.join(&args.cache));
    runtime.block_on(bench(args, profiles, explicit, notes, out, cache))
}

async fn bench(
    args: Args,
    profiles: Vec<Option<WanProfile>>,
    explicit_copiers: bool,
    mut notes: Vec<String>,
    out: PathBuf,
    cache: PathBuf,
) -> anyhow::Result<()> {
    let mirror_bin = match &args.mirror_bin {
        Some(bin) => bin.clone(),
        None => build_mirror()?,
    };
    std::fs::create_dir_all(&cache)?;
    let ca = if args.tls { Some(TestCa::new()?) } else { None };
    let setup = Setup {
        mirror_bin,
        mirror_args: args.mirror_args.clone(),
        ca: ca.as_ref(),
    };
    let mut results = Results::default();
    let mut order_of_scenario = 0;
    for &scenario in &args.scenarios {
        let full = tokio::task::block_in_place(|| prepare(&cache, scenario))?;
        let storage = source_storage(&cache, &full).await?;
        let update = if args.phases.contains(&Phase::Update) {
            tokio::task::block_in_place(|| prepare_update(&cache, scenario))?
        } else {
            None
        };
        let src = setup.registry().await?;
        tokio::task::block_in_place(|| seed::clone_storage(&storage, src.storage_dir(), None))?;
        let instances: Vec<(String, Prepared)> = match scenario {
            Scenario::Huge => args
                .huge_tags
                .iter()
                .map(|n| {
                    (
                        format!("huge {n}"),
                        full.first_repositories(n / HUGE_TAGS_PER_REPOSITORY),
                    )
                })
                .collect(),
            _ => vec![(scenario.name().to_string(), full.clone())],
        };
        let copiers: Vec<Copier> = args
            .copiers
            .iter()
            .copied()
            .filter(|c| explicit_copiers || scenario != Scenario::Huge || *c != Copier::SkopeoCopy)
            .collect();
        if copiers.len() < args.copiers.len() {
            notes.push("skopeo copy left out of huge (a process per tag); name it with --copier to run it.".into());
        }
        for (name, prepared) in instances {
            order_of_scenario += 1;
            results.tags.insert(name.clone(), prepared.images.len());
            eprintln!(
                "{name}: {} tags in {} repositories, {:.0} MiB unique",
                prepared.images.len(),
                prepared.repositories().len(),
                prepared.unique_bytes() as f64 / 1048576.0
            );
            for (order_of_profile, profile) in profiles.iter().enumerate() {
                let link = profile.map(Link::new);
                let src_front = match &link {
                    Some(l) => Some(Shaper::start(addr(&src)?, l.clone()).await?),
                    None => None,
                };
                let profile_name = profile.map_or("loopback".to_string(), |p| p.to_string());
                let bench = Bench {
                    setup: &setup,
                    src: &src,
                    storage: &storage,
                    src_front: src_front.as_ref(),
                    link: link.clone(),
                    prepared: &prepared,
                };
                for &phase in &args.phases {
                    let update = match phase {
                        Phase::Update => match &update {
                            Some(u) => Some(u),
                            None => continue,
                        },
                        _ => None,
                    };
                    for run in 0..args.runs {
                        // Alternate the order so no contender always runs on a warm cache.
                        let mut order: Vec<Contender> =
                            copiers.iter().map(|c| Contender::plain(*c)).collect();
                        order.extend(args.variants.iter().cloned());
                        order.extend(args.builds.iter().cloned());
                        let n = order.len();
                        order.rotate_left(run % n);
                        for contender in order {
                            let sample =
                                bench
                                    .one(update, phase, &contender)
                                    .await
                                    .with_context(|| {
                                        format!(
                                            "{name} {profile_name} {phase:?} {}",
                                            contender.name()
                                        )
                                    })?;
                            eprintln!(
                                "  {profile_name} {:?} {:<12} run {}: {:.2} s wall, {:.2} s CPU, {} MiB RSS, {:.0} MiB from the source, {} requests",
                                phase,
                                contender.name(),
                                run + 1,
                                sample.wall.as_secs_f64(),
                                sample.cpu.as_secs_f64(),
                                sample.max_rss_kib / 1024,
                                sample.source_bytes as f64 / 1048576.0,
                                sample.requests
                            );
                            results.add(
                                Key {
                                    scenario: (order_of_scenario, name.clone()),
                                    profile: (order_of_profile, profile_name.clone()),
                                    phase: format!("{phase:?}").to_lowercase(),
                                    contender,
                                },
                                sample,
                            );
                        }
                    }
                }
            }
        }
    }
    let table = results.markdown();
    let scale = results.scale_markdown();
    println!("{table}");
    if !scale.is_empty() {
        println!("{scale}");
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    notes.dedup();
    let header = header(&args, &profiles, &notes);
    let mut text = format!("{header}\n\n{table}");
    if !scale.is_empty() {
        text += &format!("\nTags per second and requests per tag (both registries, listings included):\n\n{scale}");
    }
    std::fs::write(&out, text)?;
    let svg_path = out.with_extension("svg");
    let title = format!(
        "median wall time, {} run{} (log scale; dashed: the limit)",
        args.runs,
        if args.runs == 1 { "" } else { "s" }
    );
    std::fs::write(&svg_path, chart::svg(&title, &results.panels()))?;
    eprintln!("written to {} and {}", out.display(), svg_path.display());
    Ok(())
}

fn addr(r: &Registry) -> anyhow::Result<SocketAddr> {
    r.host().parse().context("the registry's address")
}

/// One scenario on one profile: the source, its shaping front, the link.
struct Bench<'a> {
    setup: &'a Setup<'a>,
    src: &'a Registry,
    /// The source's storage as prepared, before any update.
    storage: &'a std::path::Path,
    src_front: Option<&'a Shaper>,
    link: Option<Arc<Link>>,
    prepared: &'a Prepared,
}

impl Bench<'_> {
    /// One measured run on a fresh target registry, set up for the phase.
    /// The source holds the scenario as prepared, before and after.
    async fn one(
        &self,
        update: Option<&Update>,
        phase: Phase,
        contender: &Contender,
    ) -> anyhow::Result<measure::Sample> {
        let (setup, src, prepared) = (self.setup, self.src, self.prepared);
        let copier = contender.copier;
        let dst = setup.registry().await?;
        let dst_front = match &self.link {
            Some(l) => Some(Shaper::start(addr(&dst)?, l.clone()).await?),
            None => None,
        };
        // Every contender goes through the link but the limit, which on a
        // WAN profile is measured on loopback and made a bound (limit.rs).
        let (source, target) = match (self.src_front, &dst_front, copier) {
            (Some(s), Some(d), c) if c != Copier::Limit => (s.host(), d.host()),
            _ => (src.host(), dst.host()),
        };
        let work = tempfile::tempdir()?;
        let job = |images: &[Image], heads_only: bool| Job {
            source: source.clone(),
            target: target.clone(),
            images: images.to_vec(),
            heads_only,
            mirror_bin: contender.bin.as_ref().unwrap_or(&setup.mirror_bin).clone(),
            mirror_args: setup.mirror_args_for(&[&source, &target], &contender.args),
            work: work.path().to_path_buf(),
            tls: setup.ca.is_some(),
        };
        let client = setup.client(&src.host());
        if phase != Phase::Cold {
            // The target as a cold copy leaves it: the source's storage as
            // prepared (not as updates have left it: it would hold their
            // blobs).
            let repos = prepared.repositories();
            tokio::task::block_in_place(|| {
                seed::clone_storage(self.storage, dst.storage_dir(), Some(&repos))
            })?;
        }
        let mut images = prepared.images.clone();
        if let Some(u) = update {
            push_layout(&client, &src.host(), &u.changed.layout).await?;
            if copier == Copier::Limit {
                // The limit moves only what is new, of these repositories.
                let old: std::collections::HashSet<_> = prepared
                    .images
                    .iter()
                    .flat_map(|i| i.blobs.iter().map(|b| b.0.clone()))
                    .collect();
                let repos: std::collections::HashSet<_> =
                    prepared.repositories().into_iter().collect();
                images = u.changed.images.clone();
                images.retain(|i| repos.contains(&i.repository));
                for i in &mut images {
                    i.blobs.retain(|b| !old.contains(&b.0));
                }
            }
        }
        let heads_only = phase == Phase::Rerun;
        let before = src.response_bytes("GET", "/blobs/");
        let requests = || src.access_log().len() + dst.access_log().len();
        let requests_before = requests();
        let measured = measure::run(&mut copier.command(&job(&images, heads_only))?);
        // Counted before the source is restored (its pushes are not the run's).
        let (source_bytes, requests) = (
            src.response_bytes("GET", "/blobs/") - before,
            (requests() - requests_before) as u64,
        );
        if let Some(u) = update {
            push_layout(&client, &src.host(), &u.restore).await?;
        }
        let mut sample = measured?;
        sample.source_bytes = source_bytes;
        sample.requests = requests;
        if let (Some(link), Copier::Limit) = (&self.link, copier) {
            // An unchanged re-run moves no blob.
            let bytes = if heads_only {
                0
            } else {
                limit::unique_bytes(&images)
            };
            sample.wall = limit::wan_bound(
                sample.wall,
                bytes,
                &link.profile,
                limit::round_trips(&images, heads_only),
            );
        }
        Ok(sample)
    }
}

/// What every run shares: the binary, its extra arguments, the CA when the
/// registries speak TLS.
struct Setup<'a> {
    mirror_bin: PathBuf,
    mirror_args: Vec<String>,
    ca: Option<&'a TestCa>,
}

impl Setup<'_> {
    async fn registry(&self) -> anyhow::Result<Registry> {
        Registry::start(RegistryOptions {
            tls: self.ca,
            ..Default::default()
        })
        .await
    }

    fn client(&self, host: &str) -> registry_client::Client {
        match self.ca {
            None => client(host, None),
            Some(ca) => registry_client::Client::new(
                registry_client::ClientConfig::builder()
                    .tls_registries([host])
                    .ca_files([ca.ca_pem_path()])
                    .build(),
            )
            .expect("client"),
        }
    }

    /// mirror's extra arguments, with the CA and TLS hosts when needed.
    fn mirror_args_for(&self, hosts: &[&str], more: &[String]) -> Vec<String> {
        let mut args = self.mirror_args.clone();
        args.extend_from_slice(more);
        if let Some(ca) = self.ca {
            args.push(format!("--ca-file={}", ca.ca_pem_path().display()));
            args.extend(hosts.iter().map(|h| format!("--tls-registry={h}")));
        }
        args
    }
}

/// What the table's reader needs to know: the machine, the profiles, the
/// peers' versions and settings, what was left out.
fn header(args: &Args, profiles: &[Option<WanProfile>], notes: &[String]) -> String {
    let mut h = machine();
    if !args.mirror_args.is_empty() {
        h += &format!(" mirror ran with `{}`.", args.mirror_args.join(" "));
    }
    for b in &args.builds {
        if let Some(bin) = &b.bin {
            h += &format!(
                " `mirror [{}]` is another build, {}.",
                b.label,
                bin.display()
            );
        }
    }
    if args.tls {
        h += " Both registries spoke TLS (crane and regsync without verifying).";
    }
    let wan: Vec<String> = profiles.iter().flatten().map(|p| p.to_string()).collect();
    if !wan.is_empty() {
        h += &format!(
            " WAN profiles {}: a shaping proxy in front of each registry adds half the round trip each way (and one round trip per new connection) and caps each direction at the rate, shared by every connection; on them the limit is a bound, the slower of bytes ÷ rate and the limit measured on loopback, plus the fewest round trips the work needs one after another.",
            wan.join(" and ")
        );
    }
    let versions: Vec<String> = [
        ("skopeo", Copier::SkopeoSync, &["--version"][..]),
        ("crane", Copier::Crane, &["version"][..]),
        ("regsync", Copier::Regsync, &["version"][..]),
    ]
    .iter()
    .filter(|(_, c, _)| {
        args.copiers.contains(c)
            || (*c == Copier::SkopeoSync && args.copiers.contains(&Copier::SkopeoCopy))
    })
    .filter_map(|(bin, _, v)| {
        let path = peers::find(bin)?;
        Some(format!("{bin} `{}`", peers::version(&path, v)))
    })
    .collect();
    if !versions.is_empty() {
        h += &format!(" Peers: {}.", versions.join(", "));
    }
    if args.copiers.contains(&Copier::Crane) {
        h += " crane ran as `crane copy --insecure --all-tags SRC/REPO DST/REPO` per repository (its default -j, the CPU count).";
    }
    if args.copiers.contains(&Copier::Regsync) {
        h += &format!(
            " regsync ran as `regsync once` over one config of every repository (`type: repository`) with `reqPerSec: {}` and `reqConcurrent: {}` for both registries and `defaults.parallel: {}`.",
            peers::REGSYNC_REQ_PER_SEC,
            peers::REGSYNC_REQ_CONCURRENT,
            peers::REGSYNC_PARALLEL
        );
    }
    for n in notes {
        h += " ";
        h += n;
    }
    h
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("Machine: {cores} cores ({cpu}); two local distribution registries.")
}
