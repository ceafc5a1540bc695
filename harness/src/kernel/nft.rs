//! nftables inside a namespace, through libnftables: the library the `nft`
//! binary is a thin front end to, so a script means exactly what `nft -f`
//! makes of it (same parser, same evaluation, one transaction).
//!
//! Why not the `nft` program: starting it (exec and dynamic linking of
//! eleven libraries) costs 3-5 ms on this kind of machine, while parsing and
//! committing a security group's ruleset in the library costs ~0.3 ms. A
//! trunk lab has one ruleset per member ENI, so with 10,000 pods the process
//! starts were most of the bring-up.
//!
//! The library is opened at run time (`libnftables.so.1`, installed with
//! `nft` itself), so building cnlab needs no nftables headers.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use super::{KernelError, NetNs};

/// `NFT_CTX_OUTPUT_JSON` in `nftables/libnftables.h`.
const OUTPUT_JSON: c_uint = 1 << 4;
/// `NFT_CTX_DEFAULT`.
const CTX_DEFAULT: u32 = 0;

type Ctx = *mut c_void;

/// The entry points cnlab uses, resolved once per process.
struct Lib {
    ctx_new: unsafe extern "C" fn(u32) -> Ctx,
    ctx_free: unsafe extern "C" fn(Ctx),
    buffer_output: unsafe extern "C" fn(Ctx) -> c_int,
    buffer_error: unsafe extern "C" fn(Ctx) -> c_int,
    get_output_buffer: unsafe extern "C" fn(Ctx) -> *const c_char,
    get_error_buffer: unsafe extern "C" fn(Ctx) -> *const c_char,
    output_set_flags: unsafe extern "C" fn(Ctx, c_uint),
    run_cmd_from_buffer: unsafe extern "C" fn(Ctx, *const c_char) -> c_int,
    /// Kept open for the process's lifetime: the pointers above live in it.
    _lib: libloading::Library,
}

const SONAME: &str = "libnftables.so.1";

static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();

fn lib() -> Result<&'static Lib, KernelError> {
    LIB.get_or_init(|| {
        // SAFETY: loading libnftables runs no initialiser with preconditions;
        // each symbol is looked up with the signature libnftables.h declares.
        let lib = unsafe {
            let l = libloading::Library::new(SONAME).map_err(|e| {
                format!("{SONAME} could not be loaded ({e}): install the nftables package")
            })?;
            macro_rules! sym {
                ($name:literal) => {
                    *l.get(concat!($name, "\0").as_bytes())
                        .map_err(|e| format!("{SONAME} lacks {}: {e}", $name))?
                };
            }
            Lib {
                ctx_new: sym!("nft_ctx_new"),
                ctx_free: sym!("nft_ctx_free"),
                buffer_output: sym!("nft_ctx_buffer_output"),
                buffer_error: sym!("nft_ctx_buffer_error"),
                get_output_buffer: sym!("nft_ctx_get_output_buffer"),
                get_error_buffer: sym!("nft_ctx_get_error_buffer"),
                output_set_flags: sym!("nft_ctx_output_set_flags"),
                run_cmd_from_buffer: sym!("nft_run_cmd_from_buffer"),
                _lib: l,
            }
        };
        // The first context sets up the library's process-wide state (gmp,
        // xtables); do it here, once, so no ruleset waits for it.
        // SAFETY: as in `run_locked`; a context is freed right away, and
        // its netlink socket (in this thread's namespace) with it.
        unsafe {
            let _one = CALLS.lock().unwrap_or_else(|p| p.into_inner());
            let ctx = (lib.ctx_new)(CTX_DEFAULT);
            if !ctx.is_null() {
                (lib.ctx_free)(ctx);
            }
        }
        Ok(lib)
    })
    .as_ref()
    .map_err(|e| KernelError::new(e.clone()))
}

/// Opens the library on a thread of its own, so the first ruleset of a
/// bring-up does not wait for the dynamic loader (~1-2 ms).
/// Nothing to do once it is open.
pub fn warm_up() {
    if LIB.get().is_none() {
        std::thread::spawn(|| {
            let _ = lib();
        });
    }
}

/// One libnftables call at a time in this process: `nft_ctx_new` sets up
/// process-wide state (gmp, xtables) on first use without a lock of its
/// own. A ruleset takes well under a millisecond, so this costs little.
static CALLS: Mutex<()> = Mutex::new(());

/// Runs one nft command buffer (a whole script is one transaction) on the
/// calling thread: the context's netlink socket, and so every table it
/// lists or changes, belongs to this thread's network namespace.
fn run_here(cmd: &str, json: bool) -> Result<String, String> {
    let cmd = CString::new(cmd).map_err(|_| "the command holds a NUL byte".to_string())?;
    let lib = lib().map_err(|e| e.0)?;
    let _one = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the context is created, used and freed on this thread, under
    // CALLS; the buffers it returns are copied before it is freed.
    unsafe {
        let ctx = (lib.ctx_new)(CTX_DEFAULT);
        if ctx.is_null() {
            return Err("nft_ctx_new failed".into());
        }
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        if json {
            (lib.output_set_flags)(ctx, OUTPUT_JSON);
        }
        let rc = (lib.run_cmd_from_buffer)(ctx, cmd.as_ptr());
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let out = text((lib.get_output_buffer)(ctx));
        let err = text((lib.get_error_buffer)(ctx));
        (lib.ctx_free)(ctx);
        if rc == 0 {
            Ok(out)
        } else {
            Err(format!("nft failed: {}", err.trim()))
        }
    }
}

/// Runs `cmd` inside `ns` (on a thread that entered it).
fn run(ns: &NetNs, cmd: &str, json: bool, what: &str) -> Result<String, KernelError> {
    ns.run(|| run_here(cmd, json))?
        .map_err(|m| KernelError::new(format!("{what} in {}: {m}", ns.name())))
}

/// Applies `script` in `ns` as one transaction, like `nft -f`.
pub fn apply(ns: &NetNs, script: &str) -> Result<(), KernelError> {
    run(ns, script, false, "applying nft ruleset").map(|_| ())
}

/// Applies `script` in the namespace the calling thread is in, which the
/// caller has entered on purpose (a build worker): no thread is started.
pub fn apply_here(ns_name: &str, script: &str) -> Result<(), KernelError> {
    run_here(script, false)
        .map(|_| ())
        .map_err(|m| KernelError::new(format!("applying nft ruleset in {ns_name}: {m}")))
}

/// `nft list ruleset` in `ns`.
pub fn list_ruleset(ns: &NetNs) -> Result<String, KernelError> {
    run(ns, "list ruleset", false, "listing nft ruleset")
}

/// `nft -j list ruleset` in `ns` (counters, handles).
pub fn list_ruleset_json(ns: &NetNs) -> Result<serde_json::Value, KernelError> {
    let out = run(ns, "list ruleset", true, "listing nft ruleset")?;
    serde_json::from_str(&out).map_err(|e| {
        KernelError::new(format!(
            "listing nft ruleset in {}: parsing nft -j output: {e}",
            ns.name()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_byte_is_an_error_not_a_truncated_script() {
        let e = run_here("flush ruleset\0table ip x", false).unwrap_err();
        assert!(e.contains("NUL"), "{e}");
    }
}
