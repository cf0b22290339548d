using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace EfEnvelope.LocalKms;

/// <summary>Checks a request's AWS Signature Version 4 against the one configured key pair, as KMS checks its callers.</summary>
/// <remarks>
/// The canonical request, string to sign and signing key follow the published SigV4 algorithm: the signature covers
/// the method, path, query, the headers the client listed as signed, and the SHA-256 of the body. The Region in the
/// credential scope is any Region (the server serves them all); the service must be <c>kms</c>.
/// </remarks>
internal sealed class SigV4Verifier(string accessKeyId, string secretAccessKey, string? sessionToken, TimeProvider time)
{
    private const string Algorithm = "AWS4-HMAC-SHA256";

    // KMS refuses signatures dated more than five minutes from its clock (a replay window and a clock-skew check).
    private static readonly TimeSpan AllowedSkew = TimeSpan.FromMinutes(5);

    /// <summary>Verifies the request and returns the Region it was signed for.</summary>
    public string Verify(string method, Uri url, Func<string, string?> header, ReadOnlySpan<byte> body)
    {
        var authorization = header("Authorization");
        if (authorization is null)
        {
            throw new KmsErrorException("MissingAuthenticationTokenException", "Missing Authentication Token");
        }

        if (!authorization.StartsWith(Algorithm + " ", StringComparison.Ordinal))
        {
            throw new KmsErrorException("IncompleteSignatureException", $"Authorization header requires the {Algorithm} algorithm.");
        }

        var parts = authorization[Algorithm.Length..]
            .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split('=', 2))
            .Where(p => p.Length == 2)
            .ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        if (!parts.TryGetValue("Credential", out var credential) || !parts.TryGetValue("SignedHeaders", out var signedHeaders) || !parts.TryGetValue("Signature", out var signature))
        {
            throw new KmsErrorException("IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.");
        }

        var scope = credential.Split('/');
        if (scope.Length != 5 || scope[3] != "kms" || scope[4] != "aws4_request")
        {
            throw new KmsErrorException("IncompleteSignatureException", $"Credential should be scoped to a valid Region and to the kms service: '{credential}'.");
        }

        var (keyId, date, region) = (scope[0], scope[1], scope[2]);
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(keyId), Encoding.UTF8.GetBytes(accessKeyId)))
        {
            throw new KmsErrorException("UnrecognizedClientException", "The security token included in the request is invalid.");
        }

        var token = header("X-Amz-Security-Token");
        if (sessionToken is not null && token != sessionToken || sessionToken is null && token is not null)
        {
            throw new KmsErrorException("UnrecognizedClientException", "The security token included in the request is invalid.");
        }

        var amzDate = header("X-Amz-Date");
        if (amzDate is null || !DateTimeOffset.TryParseExact(amzDate, "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var signedAt))
        {
            throw new KmsErrorException("IncompleteSignatureException", "The request must carry an X-Amz-Date header (yyyyMMddTHHmmssZ).");
        }

        var now = time.GetUtcNow();
        if ((now - signedAt).Duration() > AllowedSkew)
        {
            throw new KmsErrorException("InvalidSignatureException", $"Signature expired: {amzDate} is not within five minutes of the server's time {now:yyyyMMdd'T'HHmmss'Z'}.");
        }

        if (!amzDate.StartsWith(date, StringComparison.Ordinal))
        {
            throw new KmsErrorException("InvalidSignatureException", $"The date in the credential scope ({date}) does not match X-Amz-Date ({amzDate}).");
        }

        var names = signedHeaders.Split(';');
        if (!names.Contains("host"))
        {
            throw new KmsErrorException("InvalidSignatureException", "The host header must be signed.");
        }

        var canonicalRequest = new StringBuilder()
            .Append(method).Append('\n')
            .Append(CanonicalPath(url.AbsolutePath)).Append('\n')
            .Append(CanonicalQuery(url.Query)).Append('\n');
        foreach (var name in names)
        {
            canonicalRequest.Append(name).Append(':').Append(CanonicalValue(header(name) ?? "")).Append('\n');
        }

        canonicalRequest.Append('\n').Append(signedHeaders).Append('\n').Append(Convert.ToHexStringLower(SHA256.HashData(body)));

        var stringToSign = $"{Algorithm}\n{amzDate}\n{date}/{region}/kms/aws4_request\n{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest.ToString())))}";
        var signingKey = Hmac(Hmac(Hmac(Hmac(Encoding.UTF8.GetBytes("AWS4" + secretAccessKey), date), region), "kms"), "aws4_request");
        var expected = Convert.ToHexStringLower(Hmac(signingKey, stringToSign));
        if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(signature)))
        {
            throw new KmsErrorException("InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.");
        }

        return region;
    }

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    // Header values are trimmed and inner runs of spaces collapsed to one, as the algorithm prescribes.
    private static string CanonicalValue(string value) =>
        string.Join(' ', value.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries));

    private static string CanonicalPath(string path) =>
        path.Length == 0 ? "/" : string.Join('/', path.Split('/').Select(s => Uri.EscapeDataString(Uri.UnescapeDataString(s))));

    private static string CanonicalQuery(string query)
    {
        if (query.Length <= 1)
        {
            return "";
        }

        return string.Join('&', query[1..]
            .Split('&', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split('=', 2))
            .Select(p => (Name: Uri.EscapeDataString(Uri.UnescapeDataString(p[0])), Value: p.Length == 2 ? Uri.EscapeDataString(Uri.UnescapeDataString(p[1])) : ""))
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ThenBy(p => p.Value, StringComparer.Ordinal)
            .Select(p => p.Name + "=" + p.Value));
    }
}
