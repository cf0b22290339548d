using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.Update;

/// <summary>
/// Items of a JSON-mapped owned collection reordered in the application's list, then edited: the save writes each
/// edit to its own item, as plain EF's does (EF saves the edits, not the new order), and the list keeps the
/// application's order. Found by a user-style review: the edit of an encrypted member after a reorder wrote another
/// item in its place (EF serializes a rewritten item from its list position), so an item was lost and the document
/// was refused as tampered with from then on. Also, on the same model: items read by index in a tracking projection.
/// </summary>
public sealed class JsonCollectionOrderTests : PlainAndEncryptedSqlite
{


    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task Edits_after_a_reorder_are_saved_to_their_own_items_and_the_list_keeps_its_order(bool encrypted)
    {
        await SeedAsync(encrypted, "a", "b", "c");
        await using (var db = Create(encrypted))
        {
            var document = await db.Documents.SingleAsync(Ct);
            document.Lines.Reverse();
            document.Lines[0].Note = "c edited";
            db.SaveChanges();
            Assert.Equal("c:c edited, b:note b, a:note a", Describe(document));
        }

        Assert.Equal("a:note a, b:note b, c:c edited", await ReadAsync(encrypted));

        // In a new context: reversed again and another item edited, saved asynchronously. (Plain EF fails when two items
        // of a reordered collection are edited in one save, so that is not compared.)
        await using (var db = Create(encrypted))
        {
            var document = await db.Documents.SingleAsync(Ct);
            document.Lines.Reverse();
            document.Lines[2].Note = "a edited";
            await db.SaveChangesAsync(Ct);
            Assert.Equal("c:c edited, b:note b, a:a edited", Describe(document));
        }

        Assert.Equal("a:a edited, b:note b, c:c edited", await ReadAsync(encrypted));
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task An_edit_of_an_item_whose_nested_collection_was_reordered_saves_the_edit_as_plain_EF_does(bool encrypted)
    {
        // Found by a review: EF rewrote the edited item with its reordered nested list and its ordinals clashed.
        await using (var db = CreateBinders(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            db.Binders.Add(new Binder { Id = 1, Sheets = [new Sheet { Note = "note a", Parts = [new Part { Code = "p1" }, new Part { Code = "p2" }] }] });
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = CreateBinders(encrypted))
        {
            var sheet = (await db.Binders.SingleAsync(Ct)).Sheets[0];
            sheet.Parts.Reverse();
            sheet.Note = "a edited";
            await db.SaveChangesAsync(Ct);
            Assert.Equal(["p2", "p1"], sheet.Parts.Select(p => p.Code));
        }

        await using var check = CreateBinders(encrypted);
        var saved = (await check.Binders.AsNoTracking().SingleAsync(Ct)).Sheets[0];
        Assert.Equal(("a edited", "p1, p2"), (saved.Note, string.Join(", ", saved.Parts.Select(p => p.Code))));
    }

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task Items_read_by_index_beside_each_other_in_a_tracking_query_track_nothing_as_in_plain_EF(bool encrypted)
    {
        // Found by a user-style review: EfEnvelope refused this, taking d.Lines[1] for a tracked entity.
        await SeedAsync(encrypted, "a", "b");
        await using var db = Create(encrypted);
        var row = await db.Documents.Select(d => new { First = d.Lines[0].Note, Second = d.Lines[1].Sku }).SingleAsync(Ct);
        Assert.Equal(("note a", "b"), (row.First, row.Second));
        Assert.Empty(db.ChangeTracker.Entries());
    }

    private async Task SeedAsync(bool encrypted, params string[] skus)
    {
        await using var db = Create(encrypted);
        await db.Database.EnsureCreatedAsync(Ct);
        db.Documents.Add(new Document { Id = 1, Lines = [.. skus.Select(sku => new Line { Sku = sku, Note = "note " + sku })] });
        await db.SaveChangesAsync(Ct);
    }

    private async Task<string> ReadAsync(bool encrypted)
    {
        await using var db = Create(encrypted);
        return Describe(await db.Documents.AsNoTracking().SingleAsync(Ct));
    }

    private static string Describe(Document document) => string.Join(", ", document.Lines.Select(l => $"{l.Sku}:{l.Note}"));

    private DocumentContext Create(bool encrypted)
    {
        var options = Options(encrypted);
        return encrypted ? new EncryptedDocumentContext(options) : new DocumentContext(options);
    }

    private BinderContext CreateBinders(bool encrypted)
    {
        var options = Options(encrypted);
        return encrypted ? new EncryptedBinderContext(options) : new BinderContext(options);
    }

    private sealed class Document
    {
        public int Id { get; set; }

        public List<Line> Lines { get; set; } = [];
    }

    private sealed class Line
    {
        public string Sku { get; set; } = "";

        public string? Note { get; set; }
    }

    // Two context types, because EF builds one model per context type.
    private class DocumentContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Document> Documents => Set<Document>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Document>().OwnsMany(d => d.Lines, line =>
            {
                line.ToJson();
                Configure(line);
            });

        protected virtual void Configure(Microsoft.EntityFrameworkCore.Metadata.Builders.OwnedNavigationBuilder<Document, Line> line)
        {
        }
    }

    private sealed class EncryptedDocumentContext(DbContextOptions options) : DocumentContext(options)
    {
        protected override void Configure(Microsoft.EntityFrameworkCore.Metadata.Builders.OwnedNavigationBuilder<Document, Line> line) =>
            line.Property(l => l.Note).IsEncrypted();
    }

    private sealed class Binder
    {
        public int Id { get; set; }

        public List<Sheet> Sheets { get; set; } = [];
    }

    private sealed class Sheet
    {
        public string? Note { get; set; }

        public List<Part> Parts { get; set; } = [];
    }

    private sealed class Part
    {
        public string Code { get; set; } = "";
    }

    private class BinderContext(DbContextOptions options) : DbContext(options)
    {
        public DbSet<Binder> Binders => Set<Binder>();

        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Binder>().OwnsMany(b => b.Sheets, sheet =>
            {
                sheet.ToJson();
                sheet.OwnsMany(s => s.Parts);
                if (this is EncryptedBinderContext)
                {
                    sheet.Property(s => s.Note).IsEncrypted();
                }
            });
    }

    private sealed class EncryptedBinderContext(DbContextOptions options) : BinderContext(options);
}
