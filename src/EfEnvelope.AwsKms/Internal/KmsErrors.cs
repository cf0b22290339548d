using System.Globalization;
using Amazon.KeyManagementService.Model;
using Amazon.Runtime;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.AwsKms;

/// <summary>Turns KMS's error replies into the library's exceptions, each naming the operation, key and entity.</summary>
internal static class KmsErrors
{
    private const string Provider = AwsKmsMasterKeyProvider.ProviderName;

    public static string ForEntity(KeyContext context) =>
        context.Entity is null ? "" : $" for entity '{context.Entity}'";

    /// <param name="ex">KMS's error.</param>
    /// <param name="operation">The KMS operation that failed.</param>
    /// <param name="keyId">The key the error is about, as the caller named it.</param>
    /// <param name="context">The context, for the entity name.</param>
    /// <param name="role">For operations on two keys, which one this is (<c>source</c>, <c>destination</c>).</param>
    public static Exception Map(AmazonServiceException ex, string operation, string keyId, KeyContext context, string? role = null)
    {
        var key = role is null ? $"key '{keyId}'" : $"{role} key '{keyId}'";
        var entity = context.Entity;
        var where = ForEntity(context);
        return ex switch
        {
            DisabledException => new MasterKeyAccessRevokedException(
                $"AWS KMS {key} is disabled{where}; data under it cannot be read or written until it is enabled.",
                Provider, keyId, entity, ex),
            KMSInvalidStateException => new MasterKeyAccessRevokedException(
                $"AWS KMS key '{keyId}' is not usable{where}: it is disabled, pending deletion or otherwise unavailable.",
                Provider, keyId, entity, ex),
            _ when ex.ErrorCode is "AccessDeniedException" or "AccessDenied" => new MasterKeyAccessRevokedException(
                $"AWS KMS denied {operation} with key '{keyId}'{where}: check the key policy and the IAM permissions of the application's role.",
                Provider, keyId, entity, ex),
            NotFoundException => new MasterKeyConfigurationException(
                $"AWS KMS key '{keyId}' was not found{where}: deleted, misspelt, or in another Region or account.",
                Provider, keyId, entity, ex),
            InvalidKeyUsageException => new MasterKeyConfigurationException(
                $"AWS KMS key '{keyId}' cannot be used for {operation}{where} (InvalidKeyUsageException): envelope encryption needs a symmetric ENCRYPT_DECRYPT key.",
                Provider, keyId, entity, ex),
            IncorrectKeyException => new EnvelopeDecryptionException(
                "The wrapped key was not encrypted under this AWS KMS key.", entity, null, keyId, ex),
            InvalidCiphertextException => new EnvelopeDecryptionException(
                "AWS KMS rejected the wrapped key: tampered, truncated, or bound to another encryption context.", entity, null, keyId, ex),
            _ when CredentialProblem(ex.ErrorCode) is { } problem => new MasterKeyConfigurationException(
                $"AWS KMS rejected the application's credentials on {operation} with key '{keyId}'{where} ({ex.ErrorCode}): {problem}",
                Provider, keyId, entity, ex),
            _ when IsThrottling(ex) => new MasterKeyException(
                $"AWS KMS kept throttling {operation} with key '{keyId}'{where} after the SDK's retries ({ex.ErrorCode}); raise the KMS request quota or the key cache's time to live.",
                Provider, keyId, entity, ex),
            _ when (int)ex.StatusCode >= 500 => new MasterKeyException(
                $"AWS KMS failed {operation} with key '{keyId}'{where} after the SDK's retries (HTTP {((int)ex.StatusCode).ToString(CultureInfo.InvariantCulture)}, {ex.ErrorCode}).",
                Provider, keyId, entity, ex),
            _ => new MasterKeyException(
                $"AWS KMS refused {operation} with key '{keyId}'{where} ({ex.ErrorCode}).",
                Provider, keyId, entity, ex),
        };
    }

    /// <summary>Whether a <c>ReEncrypt</c> refusal is about permission on the destination key (<c>kms:ReEncryptTo</c>).</summary>
    /// <remarks>KMS's access-denied message names the action the caller lacks, which is the one way to tell the two keys apart.</remarks>
    public static bool IsDeniedReEncryptTo(AmazonServiceException ex) =>
        ex.ErrorCode is "AccessDeniedException" or "AccessDenied" && ex.Message.Contains("kms:ReEncryptTo", StringComparison.Ordinal);

    // The credential errors of AWS's signature check, with what each means for whoever runs the application.
    private static string? CredentialProblem(string? errorCode) => errorCode switch
    {
        "UnrecognizedClientException" or "InvalidClientTokenId" =>
            "the access key id or session token is unknown to AWS; check which credentials the SDK's chain picked up.",
        "InvalidSignatureException" or "SignatureDoesNotMatch" or "IncompleteSignatureException" =>
            "the request signature does not match: a wrong secret access key, a wrong signing Region, or a clock far off.",
        "ExpiredTokenException" or "ExpiredToken" or "RequestExpired" =>
            "the temporary credentials have expired; the role or profile supplying them must be refreshed.",
        "MissingAuthenticationTokenException" =>
            "the request was not signed; no credentials were found.",
        _ => null,
    };

    private static bool IsThrottling(AmazonServiceException ex) =>
        ex.Retryable?.Throttling == true
        || ex.ErrorCode is "ThrottlingException" or "Throttling" or "TooManyRequestsException" or "RequestLimitExceeded";
}
