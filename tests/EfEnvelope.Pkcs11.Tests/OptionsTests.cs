using EfEnvelope.Infrastructure;
using Microsoft.EntityFrameworkCore;
namespace EfEnvelope.Pkcs11.Tests;

/// <summary>Options fail where they are set or built; none of this reaches a token.</summary>
public sealed class OptionsTests
{
    private const string Pin = "option-test-pin-4711";

    [Theory]
    [InlineData(nameof(Pkcs11Options.LibraryPath))]
    [InlineData(nameof(Pkcs11Options.TokenLabel))]
    [InlineData(nameof(Pkcs11Options.KeyLabel))]
    [InlineData(nameof(Pkcs11Options.Pin))]
    public void Empty_value_is_refused_by_the_setter_naming_the_option(string option)
    {
        var options = new Pkcs11Options();
        var property = typeof(Pkcs11Options).GetProperty(option)!;

        var error = Assert.Throws<System.Reflection.TargetInvocationException>(() => property.SetValue(options, ""));

        Assert.Equal(option, Assert.IsType<ArgumentException>(error.InnerException).ParamName);
    }

    [Fact]
    public void Token_label_longer_than_a_PKCS11_label_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => new Pkcs11Options { TokenLabel = new string('t', 33) });

        Assert.Equal(nameof(Pkcs11Options.TokenLabel), error.ParamName);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(1025)]
    public void Session_count_out_of_range_is_refused(int sessions)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new Pkcs11Options { MaxSessions = sessions });

        Assert.Equal(nameof(Pkcs11Options.MaxSessions), error.ParamName);
    }

    [Fact]
    public void Default_session_count_follows_the_processor_count()
    {
        Assert.Equal(Math.Max(2, Environment.ProcessorCount * 2), new Pkcs11Options().MaxSessions);
    }

    [Theory]
    [InlineData(nameof(Pkcs11Options.LibraryPath))]
    [InlineData(nameof(Pkcs11Options.TokenLabel))]
    [InlineData(nameof(Pkcs11Options.KeyLabel))]
    [InlineData(nameof(Pkcs11Options.Pin))]
    public void Missing_required_option_is_named_when_the_provider_is_built(string option)
    {
        var options = Complete();
        typeof(Pkcs11Options).GetField("_" + char.ToLowerInvariant(option[0]) + option[1..], System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .SetValue(options, null);

        var error = Assert.Throws<InvalidOperationException>(() => new Pkcs11MasterKeyProvider(options));

        Assert.Contains($"Pkcs11Options.{option}", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("primary")]
    [InlineData("old")]
    public void Additional_labels_must_be_non_empty_and_distinct(string repeated)
    {
        var options = Complete();
        options.AdditionalKeyLabels.Add("old");
        options.AdditionalKeyLabels.Add(repeated);

        var error = Assert.Throws<ArgumentException>(() => new Pkcs11MasterKeyProvider(options));

        Assert.Equal(nameof(Pkcs11Options.AdditionalKeyLabels), error.ParamName);
    }

    [Fact]
    public void PIN_never_appears_in_ToString_or_in_configuration_errors()
    {
        var options = Complete();
        using var provider = new Pkcs11MasterKeyProvider(options);
        options.AdditionalKeyLabels.Add("primary");
        var error = Assert.Throws<ArgumentException>(() => new Pkcs11MasterKeyProvider(options));

        Assert.Contains("Pin=set", options.ToString(), StringComparison.Ordinal);
        foreach (var text in new[] { options.ToString(), provider.ToString(), error.ToString() })
        {
            Assert.DoesNotContain(Pin, text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Equal_options_share_one_provider_and_any_difference_gives_another()
    {
        var first = Pkcs11MasterKeyProvider.GetShared(Complete());
        var again = Pkcs11MasterKeyProvider.GetShared(Complete());
        var otherPin = Complete();
        otherPin.Pin = Pin + "-other";
        var otherKeys = Complete();
        otherKeys.AdditionalKeyLabels.Add("old");

        Assert.Same(first, again);
        Assert.NotSame(first, Pkcs11MasterKeyProvider.GetShared(otherPin));
        Assert.NotSame(first, Pkcs11MasterKeyProvider.GetShared(otherKeys));

        first.Dispose();
        Assert.NotSame(first, Pkcs11MasterKeyProvider.GetShared(Complete()));
    }

    [Fact]
    public void UsePkcs11_validates_the_options_where_they_are_configured()
    {
        var error = Assert.Throws<InvalidOperationException>(() => new DbContextOptionsBuilder().UseEnvelopeEncryption(e => e.UsePkcs11(o =>
        {
            o.LibraryPath = "/usr/lib/softhsm/libsofthsm2.so";
            o.TokenLabel = "clinic";
            o.Pin = Pin;
        })));

        Assert.Contains("Pkcs11Options.KeyLabel", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Separately_built_context_options_with_equal_PKCS11_options_share_one_service_provider()
    {
        static DbContextOptions Build(string keyLabel) => new DbContextOptionsBuilder()
            .UseEnvelopeEncryption(e => e.UsePkcs11(o =>
            {
                o.LibraryPath = "/usr/lib/softhsm/libsofthsm2.so";
                o.TokenLabel = "options-sharing";
                o.KeyLabel = keyLabel;
                o.Pin = Pin;
            }))
            .Options;

        var first = Build("patients-kek").FindExtension<EnvelopeEncryptionOptionsExtension>()!.Info;
        var second = Build("patients-kek").FindExtension<EnvelopeEncryptionOptionsExtension>()!.Info;
        var other = Build("invoices-kek").FindExtension<EnvelopeEncryptionOptionsExtension>()!.Info;

        Assert.True(first.ShouldUseSameServiceProvider(second));
        Assert.Equal(first.GetServiceProviderHashCode(), second.GetServiceProviderHashCode());
        Assert.False(first.ShouldUseSameServiceProvider(other));
    }

    private static Pkcs11Options Complete() => new()
    {
        LibraryPath = "/usr/lib/softhsm/libsofthsm2.so",
        TokenLabel = "options-tests",
        KeyLabel = "primary",
        Pin = Pin,
    };
}
