namespace EfEnvelope.Analyzers.Tests;

/// <summary>EFENV007: a context with encrypted properties whose database is chosen without UseEnvelopeEncryption.</summary>
public sealed class MissingEncryptionAnalyzerTests
{
    private const string Registration = """
        public static class Startup
        {
            public static void Configure(Microsoft.Extensions.DependencyInjection.IServiceCollection services, string connection)
            {
                BODY
            }

            public static DbContextOptionsBuilder Defaults(DbContextOptionsBuilder builder) => builder;
        }

        """;

    private static Task Check(string code, string model = Model.Clinic) => Verify.Analyzer<MissingEncryptionAnalyzer>(model + code);

    private static Task Register(string body) => Check(Registration.Replace("BODY", body, StringComparison.Ordinal));

    private static string Context(string onConfiguring, string entity = "Patient") => $$"""
        public class LocalDb : DbContext
        {
            public DbSet<{{entity}}> Items => Set<{{entity}}>();
            {{onConfiguring}}
        }

        """;

    [Fact]
    public Task OnConfiguring_with_a_provider_and_no_encryption_is_reported() =>
        Check(Context("protected override void {|EFENV007:OnConfiguring|}(DbContextOptionsBuilder options) => options.UseSqlite(\"Data Source=x.db\");"));

    [Fact]
    public Task OnConfiguring_with_an_IsConfigured_fallback_is_reported() =>
        Check(Context("""
            protected override void {|EFENV007:OnConfiguring|}(DbContextOptionsBuilder options)
            {
                if (!options.IsConfigured)
                {
                    options.UseSqlite("Data Source=x.db").EnableSensitiveDataLogging();
                }
            }
            """));

    [Fact]
    public Task An_owned_or_related_type_with_encrypted_properties_counts() =>
        Check("""
            public class Ward { public int Id { get; set; } public List<Patient> Patients { get; set; } = new(); }
            """ + Context("protected override void {|EFENV007:OnConfiguring|}(DbContextOptionsBuilder options) => options.UseSqlite(\"Data Source=x.db\");", "Ward"));

    [Fact]
    public Task AddDbContext_without_encryption_is_reported() =>
        Register("{|EFENV007:services.AddDbContext<ClinicDb>(options => options.UseSqlite(connection))|};");

    [Fact]
    public Task AddDbContextFactory_with_a_service_provider_lambda_is_reported() =>
        Register("{|EFENV007:services.AddDbContextFactory<ClinicDb>((provider, options) => { options.UseSqlite(connection); })|};");

    [Fact]
    public Task A_builder_chain_without_encryption_is_reported() =>
        Check("""
            public static class Factory
            {
                public static ClinicDb Create() => new({|EFENV007:new DbContextOptionsBuilder<ClinicDb>()|}.UseSqlite("Data Source=x.db").Options);
            }
            """);

    [Fact]
    public Task Configuration_with_UseEnvelopeEncryption_is_not_reported() =>
        Check(Context("protected override void OnConfiguring(DbContextOptionsBuilder options) => options.UseSqlite(\"Data Source=x.db\").UseEnvelopeEncryption(e => { });") + Registration.Replace(
            "BODY",
            """
            services.AddDbContext<ClinicDb>(options => options.UseSqlite(connection).UseEnvelopeEncryption(e => { }));
            services.AddDbContextPool<ClinicDb>(options => { options.UseEnvelopeEncryption(e => { }); options.UseSqlite(connection); });
            _ = new DbContextOptionsBuilder<ClinicDb>().UseSqlite(connection).UseEnvelopeEncryption(e => { }).Options;
            """,
            StringComparison.Ordinal));

    [Fact]
    public Task A_builder_handed_to_other_code_may_get_encryption_there_and_is_not_reported() =>
        Register("""
            services.AddDbContext<ClinicDb>(options => Defaults(options.UseSqlite(connection)));
            services.AddDbContext<ClinicDb>(options => Defaults(options).UseSqlite(connection));
            var builder = new DbContextOptionsBuilder<ClinicDb>().UseSqlite(connection);
            _ = new DbContextOptionsBuilder<ClinicDb>().UseSqlite(connection);
            """);

    [Fact]
    public Task A_context_without_encrypted_properties_or_without_a_provider_is_not_reported() =>
        Check("""
            public class Note { public int Id { get; set; } public string Text { get; set; } = ""; }
            """ + Context("protected override void OnConfiguring(DbContextOptionsBuilder options) => options.UseSqlite(\"Data Source=x.db\");", "Note")
            + Registration.Replace("BODY", "services.AddDbContext<ClinicDb>(options => options.EnableSensitiveDataLogging());", StringComparison.Ordinal));
}
