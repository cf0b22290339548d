# shellcheck shell=bash
# SoftHSM2 token for the PKCS#11 tests. Source this file, then:
#   softhsm_setup <dir>     installs softhsm2 if missing, writes a private SOFTHSM2_CONF and token directory under
#                           <dir>, initialises one token and exports the variables the tests read:
#                           SOFTHSM2_CONF, EFENVELOPE_PKCS11_MODULE, EFENVELOPE_PKCS11_TOKEN,
#                           EFENVELOPE_PKCS11_PIN, EFENVELOPE_PKCS11_SO_PIN
#   softhsm_teardown <dir>  removes <dir> (the token and its keys) and unsets the variables.
# The PINs are random per run and live only in the environment of this shell and its children.

softhsm_setup() {
    local dir="${1:?softhsm_setup needs a directory}"
    local module=/usr/lib/softhsm/libsofthsm2.so

    if [[ ! -f "$module" ]] || ! command -v softhsm2-util >/dev/null 2>&1; then
        echo "softhsm_setup: installing softhsm2 and opensc" >&2
        if ! apt-get install -y softhsm2 opensc >/dev/null 2>&1; then
            apt-get update >/dev/null && apt-get install -y softhsm2 opensc >/dev/null || {
                echo "softhsm_setup: could not install softhsm2" >&2
                return 1
            }
        fi
    fi

    mkdir -p "$dir/tokens" || return 1
    chmod 700 "$dir"
    cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF

    export SOFTHSM2_CONF="$dir/softhsm2.conf"
    export EFENVELOPE_PKCS11_MODULE="$module"
    export EFENVELOPE_PKCS11_TOKEN="efenvelope-tests"
    EFENVELOPE_PKCS11_PIN="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    EFENVELOPE_PKCS11_SO_PIN="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    export EFENVELOPE_PKCS11_PIN EFENVELOPE_PKCS11_SO_PIN

    softhsm2-util --init-token --free --label "$EFENVELOPE_PKCS11_TOKEN" \
        --pin "$EFENVELOPE_PKCS11_PIN" --so-pin "$EFENVELOPE_PKCS11_SO_PIN" >/dev/null || {
        echo "softhsm_setup: could not initialise the token" >&2
        return 1
    }
}

softhsm_teardown() {
    local dir="${1:?softhsm_teardown needs a directory}"
    rm -rf -- "$dir"
    unset SOFTHSM2_CONF EFENVELOPE_PKCS11_MODULE EFENVELOPE_PKCS11_TOKEN EFENVELOPE_PKCS11_PIN EFENVELOPE_PKCS11_SO_PIN
}
