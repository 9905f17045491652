//! `Config::from_toml`: a config file's text layered over the embedded
//! default, then validated.
//!
//! Invalid UTF-8 is fed through `from_utf8_lossy` so no input is wasted (a
//! file that is not UTF-8 is refused before TOML parsing). Checked beyond "no
//! panic": an accepted config prints as TOML (as `check-config` does) and an error
//! has a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::config::Config;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    match Config::from_toml(&text) {
        Ok(config) => {
            let _ = config.to_toml();
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
});
