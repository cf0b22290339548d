using HealthRecords.Api;

namespace HealthRecords.Tests;

public class LogTextTests
{
    [Theory]
    [InlineData("healthrecords-dev-1a2b", "healthrecords-dev-1a2b")]
    [InlineData("Tomás Ferreira", "Tomás Ferreira")]
    [InlineData("a\u001b[2Jb", "a\\u001B[2Jb")]
    [InlineData("line\r\nforged", "line\\u000D\\u000Aforged")]
    [InlineData("del\u007f c1\u009b", "del\\u007F c1\\u009B")]
    [InlineData("rtl\u202eevil zero\u200bwidth", "rtl\\u202Eevil zero\\u200Bwidth")]
    [InlineData("sep\u2028para\u2029", "sep\\u2028para\\u2029")]
    [InlineData("back\\u001B slash", "back\\\\u001B slash")]
    [InlineData(null, "(none)")]
    public void Control_format_and_separator_characters_are_escaped_and_a_backslash_cannot_fake_an_escape(string? text, string expected) =>
        Assert.Equal(expected, LogText.Escape(text));

    [Fact]
    public void Text_beyond_the_limit_is_cut_and_marked()
    {
        var escaped = LogText.Escape(new string('k', LogText.MaxLength + 500));

        Assert.Equal(new string('k', LogText.MaxLength) + "…(cut)", escaped);
    }
}
