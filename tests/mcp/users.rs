//! A throwaway unix user for the MCP tests that connect as someone other than root: made with
//! `useradd` (no home, no login) and removed with `userdel` when dropped.
#![allow(dead_code)]

use std::process::Command;

pub struct ThrowawayUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ThrowawayUser {
    /// Creates the user; `Err` says why not (not root, no useradd).
    pub fn create(prefix: &str) -> Result<ThrowawayUser, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("the test is not running as root".into());
        }
        // Short and unique: user names are at most 32 characters.
        let name = format!("{prefix}{}", std::process::id() % 1_000_000);
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg("--user-group")
            .arg(&name)
            .output()
            .map_err(|e| format!("cannot run useradd: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let user = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .ok_or_else(|| format!("useradd made {name}, but it cannot be looked up"))?;
        Ok(ThrowawayUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
        // userdel removes the user's own group along with the user (USERGROUPS_ENAB); make sure.
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}
