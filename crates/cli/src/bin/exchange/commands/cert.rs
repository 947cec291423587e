//! `exchange cert export --p12 FILE`: your certificate and key as a
//! password-protected PKCS#12 file (PBES2, AES-256, HMAC-SHA-256) that
//! Chromium, Chrome, Firefox and the operating systems' key stores import,
//! for signing in to the web console.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use exchange_client::ClientConfig;

use super::{default_config_path, Context};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Write your certificate, key and the federation CA as a PKCS#12 file for a browser.
    /// The password comes from $EXCHANGE_P12_PASSWORD; without it one is generated and
    /// printed once.
    Export {
        /// The file to write (refused if it exists), e.g. ~/tax-analyst.p12.
        #[arg(long)]
        p12: PathBuf,
    },
}

pub fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    ctx.no_json("cert export")?;
    let Command::Export { p12 } = command;
    let path = ctx.config.clone().unwrap_or_else(default_config_path);
    let config = ClientConfig::load(&path)?;
    let dir = &config.cert_dir;
    let name = &config.cert_name;
    let read = |file: String, label: &str| {
        exchange_pki::files::read_pem_der(&dir.join(&file), label)
            .with_context(|| format!("reading {}", dir.join(&file).display()))
    };
    let ca = read("ca.crt".into(), "CERTIFICATE")?;
    let cert = read(format!("{name}.crt"), "CERTIFICATE")?;
    let key = read(format!("{name}.key"), "PRIVATE KEY")?;
    let identity = exchange_pki::CertificateInfo::parse(&cert)?.identity;
    let (password, generated) = match std::env::var("EXCHANGE_P12_PASSWORD") {
        Ok(p) if p.chars().count() >= 8 => (p, false),
        Ok(_) => anyhow::bail!("EXCHANGE_P12_PASSWORD is shorter than 8 characters: choose a longer one, or unset it to have one generated"),
        Err(_) => (generated_password()?, true),
    };
    let bytes = exchange_pki::pkcs12::to_pkcs12(&identity.uri(), &key, &cert, &ca, &password)?;
    let mut file = create_private(&p12)?;
    file.write_all(&bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", p12.display()))?;
    exchange_cli::say!(
        "wrote {} for {} ({} bytes)",
        p12.display(),
        identity,
        bytes.len()
    );
    if generated {
        exchange_cli::say!("password (shown once; the browser asks for it on import): {password}");
    }
    exchange_cli::say!("import it into the browser (README, section \"Web console\"), then open the console's https:// address");
    Ok(())
}

fn generated_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for a password"))?;
    let text = hex::encode(bytes);
    Ok(format!("{}-{}-{}", &text[..8], &text[8..16], &text[16..]))
}

/// Creates `path` readable by its owner only; an existing file is refused.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists: choose another file, or remove it first",
                path.display()
            )
        } else {
            anyhow::anyhow!("{}: {e}", path.display())
        }
    })
}
