namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>
/// One test per numbered item of issue 11. An item listed in <see cref="KnownDifferences"/> must still fail its check
/// (the test then passes and prints what it saw); an unlisted one must hold.
/// </summary>
public abstract class IssueItemTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DifferentialFixture
{
    private IssueItemChecks Checks => new(fixture, TestContext.Current.CancellationToken);

    [Fact]
    public Task Item01_forgotten_registration_fails_loudly() => VerifyAsync("issue-01", () => Checks.ForgottenRegistrationAsync());

    [Fact]
    public Task Item02_compiled_model_without_the_extension_never_drops_or_exposes_values() => VerifyAsync("issue-02", () => Checks.CompiledModelWithoutExtensionAsync());

    [Fact]
    public Task Item03_discarded_edits_are_not_saved() =>
        VerifyAsync("issue-03", () => Checks.ScenariosAsync(false, "reload-discards-local-edit", "state-unchanged-discards-edit", "set-values-original-to-current-then-unchanged"));

    [Fact]
    public Task Item04_entry_api_sees_encrypted_properties() =>
        VerifyAsync("issue-04", () => Checks.ScenariosAsync(false, "entry-property-is-modified", "entry-property-original-value", "entry-property-is-modified-partial-update", "get-database-values-after-local-edit"));

    [Fact]
    public Task Item05_constructor_binding_with_encrypted_parameters() =>
        VerifyAsync("issue-05", () => Checks.ScenariosAsync(false, "record-read-back", "class-constructor-read-back"));

    [Fact]
    public Task Item06_projections_and_composition_after_them() =>
        VerifyAsync("issue-06", () => Checks.ScenariosAsync(false, "select-dto-paging", "select-then-where-plain", "select-then-count", "select-collection-navigation", "select-then-where-searchable", "select-owned-member-tracking"));

    [Fact]
    public Task Item07_distinct_over_an_encrypted_column() =>
        VerifyAsync("issue-07", () => Checks.ScenariosAsync(false, "select-distinct-encrypted", "distinct-count-encrypted"));

    [Fact]
    public Task Item08_has_data_with_encrypted_properties() =>
        VerifyAsync("issue-08", () => Checks.ScenariosAsync(true, "has-data-read", "has-data-required-encrypted"));

    [Fact]
    public Task Item09_json_owned_types_nested_or_all_encrypted() =>
        VerifyAsync("issue-09", () => Checks.ScenariosAsync(false, "json-read-back", "json-project-member", "json-only-encrypted-members"));

    [Fact]
    public Task Item10_migration_adding_a_required_encrypted_column_to_rows() => VerifyAsync("issue-10", () => Checks.MigrationAddingRequiredEncryptedColumnAsync());

    [Fact]
    public Task Item11_messages_and_early_configuration_errors() => VerifyAsync("issue-11", () => Checks.MessagesAsync());

    [Fact]
    public Task Item12_provider_created_per_scope() => VerifyAsync("issue-12", () => Checks.ProviderPerScopeAsync());

    private async Task VerifyAsync(string id, Func<Task<string?>> check)
    {
        if (fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        string? violation;
        try
        {
            violation = await check();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            violation = $"the check itself failed with {e.GetType().Name}: {e.Message}";
        }

        var known = KnownDifferences.Find(id, fixture.Name);
        var output = TestContext.Current.TestOutputHelper!;
        if (violation is null)
        {
            output.WriteLine($"{id} holds on {fixture.Name}.");
            Assert.True(known is null, $"{id} now holds on {fixture.Name}: remove it from KnownDifferences.");
        }
        else
        {
            output.WriteLine($"{id} does not hold on {fixture.Name}{(known is null ? "" : " (known: " + known + ")")}:{Environment.NewLine}{violation}");
            Assert.True(known is not null, $"{id} does not hold on {fixture.Name}:{Environment.NewLine}{violation}");
        }
    }
}
