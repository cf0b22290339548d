# shellcheck shell=bash
# Sourced, not run. A private SoftHSM2 token for the PKCS#11 tests, so that no test touches
# the machine's own token directory (/var/lib/softhsm/tokens) and every run starts empty.
#
#   softhsm_setup <dir>   creates <dir>/tokens, a config pointing at it, one initialised token,
#                         and exports SOFTHSM2_CONF and the EFENVELOPE_PKCS11_* variables.
#   softhsm_teardown      deletes that token directory and config and unsets the variables.

softhsm_setup() {
    local dir=$1
    mkdir -p "$dir/tokens"
    chmod 700 "$dir" "$dir/tokens"
    cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
    export SOFTHSM2_CONF="$dir/softhsm2.conf"
    export EFENVELOPE_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
    export EFENVELOPE_PKCS11_TOKEN=efenvelope-test
    # Fresh PINs each run, so no test can lean on a value baked into the code.
    # Eight digits: SoftHSM wants 4 to 255 characters.
    EFENVELOPE_PKCS11_PIN=$((10000000 + $(od -An -N4 -tu4 /dev/urandom) % 90000000))
    EFENVELOPE_PKCS11_SO_PIN=$((10000000 + $(od -An -N4 -tu4 /dev/urandom) % 90000000))
    export EFENVELOPE_PKCS11_PIN EFENVELOPE_PKCS11_SO_PIN
    softhsm2-util --init-token --free --label "$EFENVELOPE_PKCS11_TOKEN" \
        --pin "$EFENVELOPE_PKCS11_PIN" --so-pin "$EFENVELOPE_PKCS11_SO_PIN" >/dev/null
    SOFTHSM_TEST_DIR=$dir
}

softhsm_teardown() {
    if [[ -n ${SOFTHSM_TEST_DIR:-} ]]; then
        rm -rf "$SOFTHSM_TEST_DIR/tokens" "$SOFTHSM_TEST_DIR/softhsm2.conf"
        rmdir "$SOFTHSM_TEST_DIR" 2>/dev/null || true
    fi
    unset SOFTHSM_TEST_DIR SOFTHSM2_CONF EFENVELOPE_PKCS11_MODULE EFENVELOPE_PKCS11_TOKEN \
        EFENVELOPE_PKCS11_PIN EFENVELOPE_PKCS11_SO_PIN
}
