//! The `swarm` binary: the allocator, the runtime, and the command line (`cli`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use swarm::exit;

/// mimalloc returns freed memory to the system promptly: after a million agents finish,
/// the audit does not stack on top of the engine's peak.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log filter without `SWARM_LOG`: swarm's own warnings, nothing from libraries.
const DEFAULT_LOG: &str = "off,swarm=warn";

/// `mi_option_purge_delay` in mimalloc v2's option enum (the version the crate builds).
pub(crate) const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Give the C library's free memory back to the system. SQLite allocates with libc's
/// malloc, not mimalloc: the page caches of the kernel's connections (its writer's 16 MiB,
/// each lookup reader's own), freed when a run ends, stay resident in glibc's per-thread
/// arenas, and the audit that follows stacked on top of them (a 10M-agent run peaked at
/// 211-260 MiB as they happened to lie).
pub(crate) fn give_back_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() -> ExitCode {
    // Give freed memory back at once: the audit then reuses the engine's pages instead of
    // stacking on top of them (peak RSS of a million-agent run).
    // SAFETY: sets a process-wide allocator option before any thread is started.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::VALID
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    // swarm's own warnings by default; libraries (h2's resets, rustls' alerts, hyper) only
    // when SWARM_LOG asks for them: a reset stream is a fact the history records, not
    // noise for the operator. Colour only on a terminal.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm: cannot start the runtime: {e}");
            return ExitCode::from(exit::INTERNAL as u8);
        }
    };
    // The verb runs as a task on the workers, not on this thread: a future driven by
    // `block_on` is woken across threads (a futex call) every time a worker's task
    // signals it, which on a busy run is once per agent.
    let outcome = runtime.block_on(async { tokio::spawn(cli::dispatch(cli)).await });
    match outcome.unwrap_or_else(|e| Err(cli::internal(anyhow::anyhow!("the run stopped: {e}")))) {
        Ok(code) => ExitCode::from(code as u8),
        Err(cli::Exit(code, e)) => {
            eprintln!("swarm: {}", causes(&e));
            ExitCode::from(code as u8)
        }
    }
}

/// An error and its causes in one line, each cause only when its words are not already
/// said (a driver error wrapped twice is printed once).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
