using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Query;

/// <summary>What a refused filter or update says: the operation it is (a comparison, a computation, a condition, a concatenation) and what to do instead.</summary>
public sealed class RefusalMessageTests : PlainAndEncryptedSqlite
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public class Member
    {
        public int Id { get; set; }

        public string Name { get; set; } = "";

        [Encrypted]
        public string Note { get; set; } = "";

        [Encrypted]
        public bool Active { get; set; }

        [Encrypted]
        public int Score { get; set; }

        [System.ComponentModel.DataAnnotations.Schema.NotMapped]
        public string Display => Name + "!";
    }

    private sealed class MemberContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Member> Members => Set<Member>();
    }

    private async Task<MemberContext> ContextAsync()
    {
        var db = new MemberContext(Options(encrypted: true));
        await db.Database.EnsureCreatedAsync(Ct);
        return db;
    }

    #pragma warning disable EFENV001, EFENV002, EFENV006 // These queries are refused at run time, which is what the tests look at.

    [Fact]
    public async Task A_range_is_a_comparison()
    {
        await using var db = await ContextAsync();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Members.Where(m => m.Score > 5).ToListAsync(Ct));
        Assert.Contains("'Member.Score' in a comparison (GreaterThan)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Arithmetic_is_a_computation_done_after_loading()
    {
        await using var db = await ContextAsync();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Members.Where(m => m.Id > 0 && m.Score + 1 == 6).ToListAsync(Ct));
        Assert.Contains("'Member.Score' in a computation (Add)", error.Message, StringComparison.Ordinal);
        Assert.Contains("cannot compute with", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("blind index", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_encrypted_bool_in_a_condition_is_tested_after_loading_or_through_its_index()
    {
        await using var db = await ContextAsync();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Members.Where(m => m.Id > 0 && m.Active).ToListAsync(Ct));
        Assert.Contains("'Member.Active' in a condition (AndAlso)", error.Message, StringComparison.Ordinal);
        Assert.Contains("cannot test an encrypted bool", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_concatenation_in_ExecuteUpdate_is_refused_as_one_and_changes_nothing()
    {
        await using var db = await ContextAsync();
        db.Members.Add(new Member { Id = 1, Name = "a", Note = "n" });
        await db.SaveChangesAsync(Ct);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(
            () => db.Members.ExecuteUpdateAsync(s => s.SetProperty(m => m.Name, m => m.Name + m.Note), Ct));

        Assert.Contains("'Member.Note' in a concatenation", error.Message, StringComparison.Ordinal);
        Assert.Contains("set the properties and call SaveChanges", error.Message, StringComparison.Ordinal);
        Assert.Equal("a", await db.Members.AsNoTracking().Select(m => m.Name).SingleAsync(Ct));
    }

    [Fact]
    public async Task A_member_EF_does_not_map_beside_an_encrypted_value_in_a_tracking_query_is_named_as_such()
    {
        await using var db = await ContextAsync();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Members.Select(m => new { m.Note, m.Display }).ToListAsync(Ct));
        Assert.Contains("projects encrypted property 'Member.Note' beside an entity", error.Message, StringComparison.Ordinal);
        Assert.Contains("(returned, passed to a method, or read through a member EF does not map)", error.Message, StringComparison.Ordinal);
    }

    #pragma warning restore EFENV001, EFENV002, EFENV006
}
