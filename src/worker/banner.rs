//! The start-up banner, laid out like Celery's so operators recognise it.

/// Renders the banner.
#[allow(clippy::too_many_arguments)]
pub fn banner(
    app: &str,
    nodename: &str,
    broker: &str,
    backend: &str,
    concurrency: usize,
    shards: usize,
    prefetch: u32,
    task_events: bool,
    queues: &[String],
    tasks: &[&str],
) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let sys = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    let art = [
        format!(" -------------- {nodename} v{version} (celeriac)"),
        format!("--- ***** ----- {sys}"),
        "-- ******* ---- ".to_string(),
        "- *** --- * --- ".to_string(),
        "- ** ---------- [config]".to_string(),
        format!("- ** ---------- .> app:         {app}"),
        format!("- ** ---------- .> transport:   {broker}"),
        format!("- ** ---------- .> results:     {backend}"),
        format!(
            "- *** --- * --- .> concurrency: {concurrency} (celeriac: {shards} shard(s), prefetch {prefetch} per body)"
        ),
        format!(
            "-- ******* ---- .> task events: {}",
            if task_events { "ON" } else { "OFF (enable -E to monitor tasks in this worker)" }
        ),
        "--- ***** ----- ".to_string(),
        " -------------- [queues]".to_string(),
    ];
    let mut out = art.join("\n");
    out.push('\n');
    for q in queues {
        out.push_str(&format!("                .> {q:<16} exchange={q}(direct) key={q}\n"));
    }
    out.push_str("\n[tasks]\n");
    // Celery's banner leaves its own built-ins (`celery.*`) out.
    for t in tasks.iter().filter(|t| !t.starts_with("celery.")) {
        out.push_str(&format!("  . {t}\n"));
    }
    out
}
