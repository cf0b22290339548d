namespace EfEnvelope.Storage;

/// <summary>
/// The stored blobs of a JSON-mapped record (its key column and ciphertexts) as some database reads hand them over:
/// the bytes of their JSON text rather than the bytes the text encodes.
/// </summary>
/// <remarks>
/// EF stores a byte[] member of a JSON document as text (hexadecimal on SQLite, base64 on PostgreSQL) and decodes it
/// when it reads the whole document. Some reads go through the database's JSON functions instead, and there the
/// provider reads the text as binary: SQLite's JSON path of a reloaded record (<c>Reload</c>), PostgreSQL's recordset of
/// an unpacked collection (<c>SelectMany</c>, a filtered or skipped collection). A key column or a ciphertext begins
/// with its format version (1 or 2), never a printable character, so text is told apart from a blob and decoded.
/// </remarks>
internal static class JsonBlobText
{
    /// <summary>
    /// The blob <paramref name="value"/> encodes as text, or null when it is not text (already a blob) or does not
    /// encode a blob.
    /// </summary>
    /// <remarks>
    /// One layer only, and only to a blob: decoding is then the same however often it runs, so every check of a value
    /// (the repeat check of JSON collection items) sees the bytes decryption sees. A value encoded several times over
    /// stays text, and is refused as not a blob.
    /// </remarks>
    public static byte[]? Decode(byte[] value)
    {
        if (value.Length == 0 || value[0] < 0x20)
        {
            return null;
        }

        var text = System.Text.Encoding.ASCII.GetString(value);
        var buffer = new byte[text.Length];
        var length = Decode(text, buffer);
        var decoded = length < 0 ? null : buffer[..length];
        return decoded is { Length: > 0 } && decoded[0] < 0x20 ? decoded : null;
    }

    /// <summary>
    /// Decodes the JSON text of a binary value into <paramref name="destination"/> (at least as long as the text):
    /// hexadecimal, as EF writes it on SQLite, else base64, as on PostgreSQL. Returns the bytes written, or -1.
    /// </summary>
    /// <remarks>
    /// The base64 of a blob, which holds its entity's name in ASCII, is in practice never all hexadecimal digits; were it
    /// so, the decoded bytes would not parse as a blob and would be refused (or, for a key prefetch, fetched later).
    /// </remarks>
    public static int Decode(ReadOnlySpan<char> text, Span<byte> destination)
    {
        if (text.Length % 2 == 0 && text.IndexOfAnyExcept("0123456789ABCDEFabcdef") < 0)
        {
            return Convert.FromHexString(text, destination, out _, out var bytes) == System.Buffers.OperationStatus.Done ? bytes : -1;
        }

        return Convert.TryFromBase64Chars(text, destination, out var written) ? written : -1;
    }

    /// <summary>Decodes, in place, the first <paramref name="count"/> stored values that are text.</summary>
    public static void DecodeInPlace(object?[] stored, int count)
    {
        for (var i = 0; i < count; i++)
        {
            if (stored[i] is byte[] value && Decode(value) is { } blob)
            {
                stored[i] = blob;
            }
        }
    }
}
