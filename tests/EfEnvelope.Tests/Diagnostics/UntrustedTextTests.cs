using EfEnvelope.Diagnostics;

namespace EfEnvelope.Tests.Diagnostics;

public sealed class UntrustedTextTests
{
    [Theory]
    [InlineData("EfEnvelope.Specification.Tests.EntityFramework.Patient")]
    [InlineData("arn:aws:kms:eu-west-1:111122223333:alias/tenant-42")]
    [InlineData("Ünïcödé entity 😀")]
    public void Configured_names_pass_through_unchanged(string name) =>
        Assert.Same(name, UntrustedText.Escape(name));

    [Theory]
    [InlineData("line\nbreak", "line\\u000Abreak")]
    [InlineData("cr\rlf", "cr\\u000Dlf")]
    [InlineData("\u001b[31mred", "\\u001B[31mred")]
    [InlineData("csi\u009b2J", "csi\\u009B2J")]
    [InlineData("bidi\u202eevil", "bidi\\u202Eevil")]
    [InlineData("nul\0", "nul\\u0000")]
    [InlineData("para\u2029graph", "para\\u2029graph")]
    public void Control_format_and_line_breaking_characters_are_written_as_escapes(string text, string expected) =>
        Assert.Equal(expected, UntrustedText.Escape(text));

    [Fact]
    public void A_lone_surrogate_is_written_as_an_escape() =>
        Assert.Equal("lone\\uD800half", UntrustedText.Escape("lone\ud800half"));

    [Fact]
    public void A_long_name_is_cut_to_the_limit_and_says_how_long_it_was()
    {
        var escaped = UntrustedText.Escape(new string('x', 65_000))!;
        Assert.StartsWith(new string('x', UntrustedText.MaxLength) + "... (65000 characters)", escaped, StringComparison.Ordinal);
        Assert.Equal(UntrustedText.MaxLength + "... (65000 characters)".Length, escaped.Length);
    }

    [Fact]
    public void A_surrogate_pair_split_by_the_cut_is_escaped_not_left_half_written()
    {
        var text = new string('x', UntrustedText.MaxLength - 1) + "😀tail";
        var escaped = UntrustedText.Escape(text)!;
        Assert.Contains("\\uD83D...", escaped, StringComparison.Ordinal);
        Assert.DoesNotContain(escaped, char.IsSurrogate);
    }

    [Fact]
    public void Null_stays_null() => Assert.Null(UntrustedText.Escape(null));

    [Fact]
    public void Exceptions_escape_the_names_in_their_message_and_keep_the_properties_as_read()
    {
        var tamper = new EnvelopeDecryptionException("Refused.", "Entity\nForged: line", "Prop\u001b[0m", "key\r\n");
        Assert.Equal("Refused. (entity 'Entity\\u000AForged: line', property 'Prop\\u001B[0m', master key 'key\\u000D\\u000A')", tamper.Message);
        Assert.Equal("Entity\nForged: line", tamper.Entity);
    }
}
