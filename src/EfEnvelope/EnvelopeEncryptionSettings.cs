using EfEnvelope.KeyManagement;
using Microsoft.Extensions.Logging;

namespace EfEnvelope;

/// <summary>The configuration gathered by the builder; equal settings share one runtime (cache, interceptors).</summary>
internal sealed class EnvelopeEncryptionSettings : IEquatable<EnvelopeEncryptionSettings>
{
    public IMasterKeyProvider? Provider { get; set; }
    public KeyWrappingMode Mode { get; set; }
    public string ApplicationName { get; set; } = "efenvelope";
    public KeyCacheOptions Cache { get; set; } = new();
    public MasterKeySelector? KeySelector { get; set; }

    /// <summary>Set by <see cref="MasterKeySelectorOptions.AcceptPreviousSelector"/>: reads also accept its choice during a move.</summary>
    public MasterKeySelector? PreviousKeySelector { get; set; }

    public TimeSpan ProviderTimeout { get; set; } = TimeSpan.FromSeconds(30);
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>
    /// The logger factory of the DbContext options this configuration was added to: EF's own, else the application's
    /// (AddDbContext and its pooled and factory forms set the application service provider before the options action
    /// runs). Part of equality, so that two hosts in one process do not share a runtime that logs to only one of them.
    /// </summary>
    public ILoggerFactory? HostLoggerFactory { get; set; }
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;
    public IRandomSource Random { get; set; } = SystemRandomSource.Instance;
    public byte[]? BlindIndexKey { get; set; }
    public bool RequireSealedRecords { get; set; }
    public bool BindStoreGeneratedKeys { get; set; }

    public EnvelopeEncryptionSettings Clone()
    {
        var copy = (EnvelopeEncryptionSettings)MemberwiseClone();
        copy.Cache = Cache.Clone();
        return copy;
    }

    // Providers compare by Equals, so a provider describing itself by configuration (key ids, region)
    // can make two separately built option sets share a cache; by default this is reference equality.
    public bool Equals(EnvelopeEncryptionSettings? other) =>
        other is not null
        && Equals(Provider, other.Provider)
        && Mode == other.Mode
        && ApplicationName == other.ApplicationName
        && Cache.SameAs(other.Cache)
        && Equals(KeySelector, other.KeySelector)
        && Equals(PreviousKeySelector, other.PreviousKeySelector)
        && ProviderTimeout == other.ProviderTimeout
        && ReferenceEquals(LoggerFactory, other.LoggerFactory)
        && ReferenceEquals(HostLoggerFactory, other.HostLoggerFactory)
        && ReferenceEquals(TimeProvider, other.TimeProvider)
        && ReferenceEquals(Random, other.Random)
        && RequireSealedRecords == other.RequireSealedRecords
        && BindStoreGeneratedKeys == other.BindStoreGeneratedKeys
        && (BlindIndexKey is null ? other.BlindIndexKey is null : other.BlindIndexKey is not null && BlindIndexKey.AsSpan().SequenceEqual(other.BlindIndexKey));

    public override bool Equals(object? obj) => Equals(obj as EnvelopeEncryptionSettings);

    public override int GetHashCode() => HashCode.Combine(Provider, Mode, ApplicationName, ProviderTimeout);
}
