using System.Reflection;
using System.Security.Cryptography;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Reliability.Tests.Secrets;

/// <summary>ToString() of every public type of the library that can be built, fed key bytes wherever it takes bytes, shows no key byte.</summary>
public sealed class ToStringTests
{
    private static readonly byte[] Secret = RandomNumberGenerator.GetBytes(32);

    /// <summary>An argument for a constructor parameter: key bytes for bytes, harmless values otherwise; null when none fits.</summary>
    private static bool TryArgument(ParameterInfo parameter, out object? value)
    {
        var type = parameter.ParameterType;
        value = type switch
        {
            _ when type == typeof(byte[]) => Secret.ToArray(),
            _ when type == typeof(ReadOnlyMemory<byte>) => new ReadOnlyMemory<byte>(Secret.ToArray()),
            _ when type == typeof(string) => parameter.Name + "-value",
            _ when type == typeof(int) || type == typeof(long) => Convert.ChangeType(32, type, System.Globalization.CultureInfo.InvariantCulture),
            _ when type == typeof(bool) => false,
            _ when type == typeof(TimeSpan) => TimeSpan.FromSeconds(1),
            _ when type == typeof(Exception) => new InvalidOperationException("inner"),
            _ when type == typeof(IMasterKeyProvider) => new InsecureInMemoryMasterKeyProvider("tostring", Secret),
            _ when type == typeof(IRandomSource) => SystemRandomSource.Instance,
            _ when type == typeof(IEnumerable<KeyValuePair<string, string>>) => new[] { KeyValuePair.Create("k", "v") },
            _ when type.IsEnum => Enum.GetValues(type).GetValue(0),
            _ when parameter.HasDefaultValue => parameter.DefaultValue,
            _ => null,
        };
        return value is not null || parameter.HasDefaultValue || !type.IsValueType && Nullable.GetUnderlyingType(type) is null && parameter.IsOptional;
    }

    [Fact]
    public void No_public_type_shows_key_bytes_in_ToString()
    {
        var assembly = typeof(EnvelopeDecryptionException).Assembly;
        var built = new List<object>
        {
            // Constructors taking spans cannot be called through reflection; these take key bytes, so build them by hand.
            new InsecureInMemoryMasterKeyProvider("tostring", Secret),
            new InsecureInMemoryMasterKeyProvider("tostring", Secret).AddKey("other", Secret.Reverse().ToArray()),
            KeyContext.For("app", "entity", Convert.ToHexString(Secret)[..8]),
        };
        // The two types built only by EF's configuration API: take them from real options.
        EnvelopeEncryptionOptionsBuilder? captured = null;
        var options = new DbContextOptionsBuilder()
            .UseSqlite("Data Source=:memory:")
            .UseEnvelopeEncryption(e => captured = e.UseProvider(new InsecureInMemoryMasterKeyProvider("tostring", Secret)))
            .Options;
        built.Add(captured!);
        built.AddRange(options.Extensions.Where(e => e.GetType().Assembly == assembly));
        built.AddRange(options.Extensions.Where(e => e.GetType().Assembly == assembly).Select(e => e.Info.LogFragment));
        var skipped = new List<string>();
        foreach (var type in assembly.GetExportedTypes().Where(t => t is { IsAbstract: false, IsInterface: false, ContainsGenericParameters: false } && !t.IsSubclassOf(typeof(Delegate))))
        {
            var instance = type.GetConstructors()
                .OrderByDescending(c => c.GetParameters().Length)
                .Select(c =>
                {
                    var arguments = new List<object?>();
                    foreach (var parameter in c.GetParameters())
                    {
                        if (parameter.ParameterType.IsByRefLike || !TryArgument(parameter, out var argument))
                        {
                            return null;
                        }

                        arguments.Add(argument);
                    }

                    try
                    {
                        return c.Invoke([.. arguments]);
                    }
                    catch (TargetInvocationException)
                    {
                        return null;
                    }
                })
                .FirstOrDefault(o => o is not null);
            if (instance is null && type.IsValueType)
            {
                instance = Activator.CreateInstance(type);
            }

            if (instance is null)
            {
                skipped.Add(type.FullName!);
                continue;
            }

            built.Add(instance);
        }

        foreach (var instance in built)
        {
            var text = instance.ToString()!;
            SecretScan.AssertFree(text, [], [Secret, Secret.Reverse().ToArray()], $"{instance.GetType().Name}.ToString()");

            // Also the decimal list form a default record or collection printer would use.
            Assert.DoesNotContain(string.Join(", ", Secret.Take(6)), text, StringComparison.Ordinal);
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"built {built.Count}: {string.Join(", ", built.Select(b => b.GetType().Name).Distinct())}\nnot constructible: {string.Join(", ", skipped)}");
        Assert.Contains(built, b => b is GeneratedDataKey);
        Assert.Contains(built, b => b is EnvelopeDecryptionException);
        Assert.Contains(built, b => b is EnvelopeEncryptionOptionsBuilder);
        Assert.True(built.Count >= 10, $"only {built.Count} instances built");
    }
}
