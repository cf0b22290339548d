using Microsoft.CodeAnalysis.Testing;

namespace EfEnvelope.Analyzers.Tests;

/// <summary>EFENV009: <c>PropertyValues.SetValues</c> on an entry whose entity type has encrypted properties.</summary>
public sealed class PropertyValuesAnalyzerTests
{
    private const string Clinic = "ClinicDb db, Patient p, Patient other, ClinicDb second, string text";

    private const string Staff = Model.Clinic + """
        public interface ISsn { string Ssn { get; } }
        public abstract class Person { public int Id { get; set; } [Encrypted] public string Ssn { get; set; } = ""; }
        public class Employee : Person { public Address Home { get; set; } = new(); }
        public class Manager : Employee { [Encrypted] public string? Bonus { get; set; } }
        public class Address { public string City { get; set; } = ""; [Encrypted] public string Street { get; set; } = ""; }
        public class Note { public int Id { get; set; } public string Text { get; set; } = ""; }
        public class StaffDb(DbContextOptions<StaffDb> options) : DbContext(options)
        {
            public DbSet<Employee> Employees => Set<Employee>();
            public DbSet<Note> Notes => Set<Note>();
            protected override void OnModelCreating(ModelBuilder b)
            {
                b.Entity<Employee>().OwnsOne(e => e.Home);
                b.Entity<Note>().Property(n => n.Text).IsEncrypted();
            }
        }

        """;

    private static Task Check(string body, string model = Model.Clinic, string parameters = Clinic, params DiagnosticResult[] expected) =>
        Verify.Analyzer<PropertyValuesAnalyzer>(model + $$"""
            public static class Edits
            {
                public static async Task Run<T>({{parameters}})
                {
                    {{body}}
                }
            }
            """, expected);

    private static Task CheckStaff(string body) =>
        Check(body, Staff, "StaffDb db, Employee e, Manager m, Note n, ISsn dto, T generic, object boxed, string text");

    [Theory]
    [MemberData(nameof(ValuesCorpus.Bypassed), MemberType = typeof(ValuesCorpus))]
    public Task Calls_that_leave_encrypted_values_behind_are_EFENV009(string body) => Check(body);

    [Theory]
    [MemberData(nameof(ValuesCorpus.Copied), MemberType = typeof(ValuesCorpus))]
    public Task Calls_that_work_or_fail_loudly_are_not_reported(string body) => Check(body);

    [Theory]
    [MemberData(nameof(ValuesCorpus.Missed), MemberType = typeof(ValuesCorpus))]
    public Task Calls_beyond_what_the_analyzer_sees_are_not_reported(string body) => Check(body);

    [Theory]
    [MemberData(nameof(ValuesCorpus.Overreported), MemberType = typeof(ValuesCorpus))]
    public Task A_copy_into_CurrentValues_of_values_the_call_does_not_show_to_be_stored_is_reported_whatever_they_hold(string body) => Check(body);

    [Fact]
    public Task Stored_values_copied_into_CurrentValues_are_not_reported() => CheckStaff("""
        db.Entry(e).CurrentValues.SetValues(db.Entry(e).OriginalValues);
        db.Entry(e).CurrentValues.SetValues(db.Entry(e).OriginalValues.Clone().Clone());
        db.Entry(e).CurrentValues.SetValues(db.Entry(e).GetDatabaseValues()!);
        db.Entry(e).CurrentValues.SetValues((await db.Entry(e).GetDatabaseValuesAsync())!);
        db.Entry(e).CurrentValues.SetValues((await db.Entry((object)m).GetDatabaseValuesAsync())!);
        db.Entry(e).CurrentValues.SetValues(db.ChangeTracker.Entries().First().OriginalValues);
        {|EFENV009:db.Entry(e).CurrentValues.SetValues(db.Entry(m).CurrentValues)|};
        {|EFENV009:db.Entry(e).CurrentValues.SetValues(db.Entry(e).CurrentValues.Clone())|};
        """);

    [Fact]
    public Task The_message_names_the_entity_the_properties_the_source_has_and_what_to_do() => Check(
        "{|#0:db.Entry(p).CurrentValues.SetValues(new { Name = text, Diagnosis = text, Ssn = text, Score = 2, Phone = text })|};",
        expected: new DiagnosticResult(Rules.ValuesBypassed).WithLocation(0).WithArguments(
            "Patient",
            "Patient.Ssn, Patient.Diagnosis, Patient.Score, ...",
            "CurrentValues.SetValues leaves them as they are",
            "copy them from the source",
            "Assign them on the entity instead (entity.Ssn = source.Ssn), which EfEnvelope saves"));

    [Fact]
    public Task Each_kind_of_call_says_what_differs_and_what_to_do_instead() => Check(
        """
        {|#0:db.Entry(p).OriginalValues.SetValues(new { Score = 1 })|};
        {|#1:db.Entry(p).CurrentValues.SetValues(second.Entry(p).CurrentValues)|};
        """,
        expected:
        [
            new DiagnosticResult(Rules.ValuesBypassed).WithLocation(0).WithArguments(
                "Patient",
                "Patient.Score",
                "OriginalValues.SetValues leaves their original values as read",
                "mark a property modified whose new original value differs from its current one, and save it",
                "Assign the property on the entity to save a value, or pass entry.GetDatabaseValues() to take the stored values"),
            new DiagnosticResult(Rules.ValuesBypassed).WithLocation(1).WithArguments(
                "Patient",
                "Patient.Ssn, Patient.Diagnosis, Patient.DateOfBirth, ...",
                "CurrentValues.SetValues copies them as the ciphertext last read or saved: an unsaved edit made on the source is not copied",
                "copy it",
                "Assign the properties on the entity, or copy OriginalValues or GetDatabaseValues(), which take an unsaved edit back as in plain EF"),
        ]);

    [Fact]
    public Task Encrypted_properties_of_a_base_type_of_an_owned_entry_and_set_fluently_count() => CheckStaff("""
        {|EFENV009:db.Entry(e).CurrentValues.SetValues(new { Ssn = text })|};
        {|EFENV009:db.Entry(m).OriginalValues.SetValues(new Manager())|};
        {|EFENV009:db.Entry(e).Reference(x => x.Home).TargetEntry!.CurrentValues.SetValues(new Dictionary<string, object> { ["Street"] = text })|};
        {|EFENV009:db.Entry(n).CurrentValues.SetValues(new { Text = text })|};
        """);

    [Fact]
    public Task A_source_typed_as_an_interface_counts_with_its_properties() => CheckStaff(
        "{|EFENV009:db.Entry(e).CurrentValues.SetValues(dto)|};");

    [Fact]
    public Task A_dictionary_whose_keys_are_not_all_constants_in_the_call_is_reported() => CheckStaff("""
        {|EFENV009:db.Entry(e).CurrentValues.SetValues(new Dictionary<string, object> { [text] = 1 })|};
        {|EFENV009:db.Entry(e).CurrentValues.SetValues(new Dictionary<string, object>(new Dictionary<string, object> { ["City"] = text }))|};
        """);

    [Fact]
    public Task Sources_without_an_encrypted_name_and_types_without_encrypted_properties_are_not_reported() => CheckStaff("""
        db.Entry(e).Reference(x => x.Home).TargetEntry!.CurrentValues.SetValues(new { City = text });
        db.Entry(e).CurrentValues.SetValues(new Dictionary<string, object> { ["Id"] = 1 });
        db.Entry(n).CurrentValues.SetValues(new { Id = 1, Title = text });
        db.Entry(n).OriginalValues.SetValues(db.Entry(n).CurrentValues);
        """);

    // Documented limits: what the runtime type holds, beyond the static types, is not looked for.
    [Fact]
    public Task Properties_of_derived_types_and_sources_typed_object_or_as_a_type_parameter_are_not_reported() => CheckStaff("""
        db.Entry(e).CurrentValues.SetValues(new { Bonus = text });
        db.Entry(e).CurrentValues.SetValues(generic!);
        db.Entry(e).CurrentValues.SetValues(boxed);
        """);
}
