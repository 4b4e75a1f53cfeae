//! The config file (src/config.rs): any text gives a config or an error naming where it went
//! wrong, never a panic. (Config::parse asks no program anything.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use wf_supervisor::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, "fuzz.toml") {
        assert!(!e.to_string().is_empty());
    }
});
