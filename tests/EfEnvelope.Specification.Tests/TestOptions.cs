using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace EfEnvelope.Specification.Tests;

public static class TestOptions
{
    /// <summary>
    /// Test processes build many encryption configurations (a provider per test), so EF Core's warning about many
    /// internal service providers, which it raises as an error by default, does not apply to them.
    /// </summary>
    public static TBuilder ManyConfigurationsPerProcess<TBuilder>(this TBuilder builder)
        where TBuilder : DbContextOptionsBuilder =>
        (TBuilder)builder.ConfigureWarnings(w => w.Ignore(CoreEventId.ManyServiceProvidersCreatedWarning));
}
