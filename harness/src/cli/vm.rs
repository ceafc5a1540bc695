//! `cnlab vm`: run a command on another kernel (see `crate::vm`).

use crate::vm::{self, Accel, VmOptions};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AccelArg {
    Kvm,
    Tcg,
}

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Kernel release or version prefix (6.12, 6.1, 6.12.117+deb12-amd64);
    /// installed with apt when missing. Default: the newest in /boot.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub mem: u32,
    /// Accelerator (default: KVM when it can start a vCPU, TCG otherwise).
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// Print the qemu command, the console and how long each part took.
    #[arg(long, short)]
    pub verbose: bool,
    /// List the kernels this machine can boot and exit.
    #[arg(long)]
    pub list: bool,
    /// The command, run as root in the current directory.
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub fn run(a: &VmArgs) -> i32 {
    if a.list {
        let ks = vm::kernels::list();
        if ks.is_empty() {
            eprintln!("cnlab vm: no kernel in /boot with modules in /lib/modules");
            return 2;
        }
        println!("{:<28}IMAGE", "KERNEL");
        for k in ks {
            println!("{:<28}{}", k.release, k.image.display());
        }
        return 0;
    }
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cnlab vm: current directory: {e}");
            return 2;
        }
    };
    let opts = VmOptions {
        kernel: a.kernel.clone(),
        cpus: a.cpus.max(1),
        mem_mb: a.mem.max(128),
        verbose: a.verbose,
        accel: a.accel.map(|x| match x {
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        }),
        command: a.command.clone(),
        cwd,
    };
    match vm::run(&opts) {
        Ok(r) => {
            if a.verbose {
                let ms = |d: std::time::Duration| d.as_millis();
                eprintln!(
                    "cnlab vm: kernel {} ({}), initramfs {} in {} ms, start-to-command {}, command {} ms, total {} ms, exit {}",
                    r.kernel.release,
                    r.accel.name(),
                    if r.initramfs_cached { "cached" } else { "built" },
                    ms(r.initramfs),
                    r.start_to_command
                        .map(|d| format!("{} ms", d.as_millis()))
                        .unwrap_or_else(|| "unknown".into()),
                    ms(r.command),
                    ms(r.total),
                    r.status
                );
            }
            r.status
        }
        Err(e) => {
            eprintln!("cnlab vm: {e}");
            125
        }
    }
}
