//! Raw aws-lc-rs signatures per second on one thread: RSA-2048 PKCS#1 SHA-256 (RS256) and
//! ECDSA P-256 SHA-256 (ES256), over a message the size of a JWT's signing input.
//! Prints one JSON object: {"RS256": per_sec, "ES256": per_sec}.

use std::time::Instant;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256};

fn rate(seconds: f64, mut sign: impl FnMut()) -> f64 {
    for _ in 0..20 {
        sign();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..10 {
            sign();
        }
        n += 10;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let args = gatehouse_bench::Args::from_env();
    let seconds: f64 = args.num_or("--seconds", 2.0);
    let message = vec![b'a'; 400];
    let rng = SystemRandom::new();

    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("rsa keygen"))?;
    let _ = rsa.as_der();
    let mut sig = vec![0u8; rsa.public_modulus_len()];
    let rs256 = rate(seconds, || {
        rsa.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut sig).expect("rsa sign");
    });

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("ec keygen"))?;
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("ec load"))?;
    let _ = ec.public_key();
    let es256 = rate(seconds, || {
        ec.sign(&rng, &message).expect("ec sign");
    });
    println!("{}", serde_json::json!({"RS256": rs256, "ES256": es256}));
    Ok(())
}
