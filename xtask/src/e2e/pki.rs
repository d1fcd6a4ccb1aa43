//! Certificates and kubeconfigs of the run, made with the `openssl` CLI: a throwaway CA, the
//! apiserver's serving certificate, and client certificates whose `O=` are Kubernetes groups.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

/// A client identity: certificate subject and the kubeconfig written for it.
pub struct Identity<'a> {
    pub file: &'a str,
    pub common_name: &'a str,
    pub groups: &'a [&'a str],
}

pub const ADMIN: Identity = Identity {
    file: "admin",
    common_name: "e2e-admin",
    groups: &["system:masters"],
};

/// The controller-manager's own identity, as kubeadm issues it: RBAC's bootstrap roles bind it,
/// and with `--use-service-account-credentials` each controller acts as its own ServiceAccount
/// in kube-system (what the admission policies and exemptions trust as Kubernetes' controllers).
pub const CONTROLLER_MANAGER: Identity = Identity {
    file: "kube-controller-manager",
    common_name: "system:kube-controller-manager",
    groups: &[],
};

/// A self-signed CA, valid for two days: long enough for any run, useless afterwards.
pub fn generate_ca(sh: &Shell, pki: &Path) -> anyhow::Result<()> {
    let config = pki.join("ca.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\n[dn]\n[ext]\n\
         basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign,digitalSignature\n\
         subjectKeyIdentifier = hash\n",
    )?;
    cmd!(
        sh,
        "openssl req -x509 -config {config} -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {pki}/ca.key -out {pki}/ca.crt -days 2 -subj /CN=billing-platform-e2e-ca"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .context("cannot create the CA with openssl: install openssl 3")?;
    Ok(())
}

/// A leaf certificate signed by the CA: `O=` per group (Kubernetes reads groups from O) and `CN=`
/// the user name.
pub fn issue(
    sh: &Shell,
    pki: &Path,
    file: &str,
    common_name: &str,
    groups: &[&str],
    extensions: &str,
) -> anyhow::Result<()> {
    let config = pki.join(format!("{file}.cnf"));
    std::fs::write(
        &config,
        format!(
            "[req]\ndistinguished_name = dn\nx509_extensions = ext\n[dn]\n[ext]\n\
             basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n\
             authorityKeyIdentifier = keyid\n{extensions}\n"
        ),
    )?;
    let subject: String = groups
        .iter()
        .map(|g| format!("/O={g}"))
        .chain([format!("/CN={common_name}")])
        .collect();
    cmd!(
        sh,
        "openssl req -x509 -config {config} -CA {pki}/ca.crt -CAkey {pki}/ca.key -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {pki}/{file}.key -out {pki}/{file}.crt -days 2 -subj {subject}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .with_context(|| format!("cannot issue the {file} certificate with openssl"))?;
    Ok(())
}

/// Issues a client certificate and writes `<file>.kubeconfig` next to the PKI.
pub fn write_identity(
    sh: &Shell,
    dir: &Path,
    pki: &Path,
    server: &str,
    identity: &Identity,
) -> anyhow::Result<PathBuf> {
    issue(
        sh,
        pki,
        identity.file,
        identity.common_name,
        identity.groups,
        "extendedKeyUsage = clientAuth",
    )?;
    let path = dir.join(format!("{}.kubeconfig", identity.file));
    std::fs::write(
        &path,
        kubeconfig(
            server,
            &pki.join("ca.crt"),
            &pki.join(format!("{}.crt", identity.file)),
            &pki.join(format!("{}.key", identity.file)),
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A kubeconfig with one cluster, one user (client certificate files) and one current context.
fn kubeconfig(server: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "e2e", "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
        "current-context": "e2e",
    });
    // JSON is YAML, and every Kubernetes client reads it.
    serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_the_server_and_the_certificate_files() {
        let text = kubeconfig(
            "https://127.0.0.1:6443",
            Path::new("/p/ca.crt"),
            Path::new("/p/a.crt"),
            Path::new("/p/a.key"),
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(value["users"][0]["user"]["client-key"], "/p/a.key");
        assert_eq!(value["current-context"], "e2e");
    }

    #[test]
    fn issued_certificates_carry_groups_as_organisations() {
        let sh = Shell::new().unwrap();
        let scratch = tempfile::tempdir().expect("a scratch dir");
        let pki = scratch.path().to_owned();
        std::fs::create_dir_all(&pki).unwrap();
        generate_ca(&sh, &pki).unwrap();
        issue(
            &sh,
            &pki,
            "dev",
            "alice",
            &["team-a", "system:authenticated"],
            "extendedKeyUsage = clientAuth",
        )
        .unwrap();
        let crt = pki.join("dev.crt");
        let ca = pki.join("ca.crt");
        let subject = cmd!(sh, "openssl x509 -in {crt} -noout -subject")
            .read()
            .unwrap();
        assert!(subject.contains("O = team-a"), "{subject}");
        assert!(subject.contains("CN = alice"), "{subject}");
        let verified = cmd!(sh, "openssl verify -CAfile {ca} {crt}")
            .read()
            .unwrap();
        assert!(verified.ends_with("OK"), "{verified}");
    }
}
