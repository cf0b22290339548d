using System.Reflection;
using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using EfEnvelope.AwsKms.Tests.LocalKms;
using EfEnvelope.KeyManagement;

namespace EfEnvelope.AwsKms.Tests.Providers;

/// <summary>Plaintext keys do not linger in the SDK's reply objects once the provider has taken them.</summary>
public sealed class AwsKmsProviderKeyHygieneTests(LocalKmsFixture kms) : IClassFixture<LocalKmsFixture>
{
    private static readonly KeyContext Patients = KeyContext.For("clinic", "Clinic.Patient");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Plaintext_in_the_SDK_replies_is_overwritten_after_it_is_copied()
    {
        var replies = new List<object>();
        var client = ReplyRecorder.Wrap(kms.Client, replies);
        var provider = kms.CreateProvider(client);

        using var key = await provider.GenerateDataKeyAsync(provider.PrimaryKeyId, Patients, Ct);
        var unwrapped = await provider.DecryptDataKeyAsync(key.KeyId, key.WrappedKey, Patients, Ct);

        var generated = Assert.IsType<GenerateDataKeyResponse>(replies[0]);
        var decrypted = Assert.IsType<DecryptResponse>(replies[1]);
        Assert.Equal(key.Plaintext, unwrapped);
        Assert.False(key.Plaintext.All(b => b == 0));
        Assert.All(generated.Plaintext.ToArray(), b => Assert.Equal(0, b));
        Assert.All(decrypted.Plaintext.ToArray(), b => Assert.Equal(0, b));
    }

    /// <summary>Forwards every call to the real client and keeps each reply, so the test can inspect it afterwards.</summary>
    public class ReplyRecorder : DispatchProxy
    {
        private IAmazonKeyManagementService _inner = null!;
        private List<object> _replies = null!;

        public static IAmazonKeyManagementService Wrap(IAmazonKeyManagementService inner, List<object> replies)
        {
            var proxy = Create<IAmazonKeyManagementService, ReplyRecorder>();
            var recorder = (ReplyRecorder)(object)proxy;
            recorder._inner = inner;
            recorder._replies = replies;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var result = targetMethod!.Invoke(_inner, args);
            if (result is Task task && targetMethod.ReturnType.IsGenericType)
            {
                var record = typeof(ReplyRecorder).GetMethod(nameof(Record), BindingFlags.NonPublic | BindingFlags.Instance)!
                    .MakeGenericMethod(targetMethod.ReturnType.GetGenericArguments()[0]);
                return record.Invoke(this, [task]);
            }

            return result;
        }

        private async Task<T> Record<T>(Task<T> call)
        {
            var reply = await call;
            lock (_replies)
            {
                _replies.Add(reply!);
            }

            return reply;
        }
    }
}
