using System.Text;
using EfEnvelope.KeyManagement;
using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Specification.Tests.EntityFramework;

/// <summary>
/// What envelope encryption must do in EF Core terms, on a real database. Each database (and each provider) gets a
/// thin subclass with its fixture; the behaviour lives here once.
/// </summary>
public abstract class EncryptionBehaviourTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : DatabaseFixture
{
    protected TFixture Fixture { get; } = fixture;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    private void SkipIfUnavailable()
    {
        if (Fixture.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    protected static Patient NewPatient(string ssn = "123-45-6789", string? diagnosis = "Hypertension, stage 1") => new()
    {
        Id = Guid.NewGuid(),
        Name = "Ann Example",
        Ssn = ssn,
        Diagnosis = diagnosis,
        DateOfBirth = new DateOnly(1980, 2, 29),
        HomeAddress = new Address { City = "Springfield", Street = "742 Evergreen Terrace " + Guid.NewGuid().ToString("N")[..6] },
        Emergency = new EmergencyContact { Relation = "sister", Phone = "+1-555-0100-" + Random.Shared.Next(1000, 9999) },
    };

    protected async Task<Patient> InsertAsync(Patient? patient = null)
    {
        patient ??= NewPatient();
        await using var db = Fixture.CreateContext();
        db.Patients.Add(patient);
        await db.SaveChangesAsync(Ct);
        return patient;
    }

    private async Task<Invoice> InsertInvoiceAsync(decimal amount)
    {
        var invoice = new Invoice { CardNumber = "4111111111111111", Amount = amount };
        await using var db = Fixture.CreateContext();
        db.Invoices.Add(invoice);
        await db.SaveChangesAsync(Ct);
        return invoice;
    }

    protected async Task<byte[]?> ReadRawAsync(string table, string column, string keyColumn, object key)
    {
        await using var db = Fixture.CreateContext();
        var sql = "SELECT \"" + column + "\" AS \"Value\" FROM \"" + table + "\" WHERE \"" + keyColumn + "\" = {0}";
        return await db.Database.SqlQueryRaw<byte[]?>(sql, key).SingleAsync(Ct);
    }

    protected async Task WriteRawAsync(string table, string column, string keyColumn, object key, byte[]? value)
    {
        await using var db = Fixture.CreateContext();
        var sql = "UPDATE \"" + table + "\" SET \"" + column + "\" = {0} WHERE \"" + keyColumn + "\" = {1}";
        var changed = await db.Database.ExecuteSqlRawAsync(sql, [value!, key], Ct);
        Assert.Equal(1, changed);
    }

    private async Task<Patient> LoadAsync(Guid id)
    {
        await using var db = Fixture.CreateContext();
        return await db.Patients.AsNoTracking().SingleAsync(p => p.Id == id, Ct);
    }

    [Fact]
    public async Task Every_supported_type_round_trips_through_sync_and_async_paths()
    {
        SkipIfUnavailable();
        var full = new AllTypes
        {
            Text = "Grüße, 世界, 🩺 \0 end",
            Bytes = [0, 1, 2, 255],
            Flag = true,
            Small = 200,
            Short = -12345,
            Int = int.MinValue,
            Long = long.MaxValue,
            Float = 3.25f,
            Double = -1e300,
            Decimal = 1234567890.0123456789m,
            Guid = Guid.NewGuid(),
            DateTime = new DateTime(2024, 2, 29, 13, 14, 15, DateTimeKind.Utc).AddTicks(7),
            DateTimeOffset = new DateTimeOffset(2024, 2, 29, 13, 14, 15, TimeSpan.FromHours(-5)),
            DateOnly = new DateOnly(1, 1, 1),
            TimeOnly = new TimeOnly(23, 59, 59, 999),
            TimeSpan = TimeSpan.FromDays(-3.5),
            Enum = (BloodType)99,
            NullableInt = 0,
            NullableGuid = Guid.Empty,
            NullableEnum = BloodType.ONegative,
            NullableDateTime = DateTime.MaxValue,
        };
        var empty = new AllTypes { Text = "", Bytes = [] };

        await using (var db = Fixture.CreateContext())
        {
            db.AllTypes.Add(full);
            db.SaveChanges();
            db.AllTypes.Add(empty);
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = Fixture.CreateContext())
        {
            var syncRead = db.AllTypes.Where(a => a.Id == full.Id).ToList().Single();
            AssertSame(full, syncRead);
        }

        await using (var db = Fixture.CreateContext())
        {
            var asyncRead = await db.AllTypes.Where(a => a.Id == empty.Id).ToListAsync(Ct);
            AssertSame(empty, asyncRead.Single());
            Assert.Equal("", asyncRead.Single().Text);
            Assert.Empty(asyncRead.Single().Bytes!);
        }

        static void AssertSame(AllTypes expected, AllTypes actual)
        {
            Assert.Equal(expected.Text, actual.Text);
            Assert.Equal(expected.Bytes, actual.Bytes);
            Assert.Equal(expected.Flag, actual.Flag);
            Assert.Equal(expected.Small, actual.Small);
            Assert.Equal(expected.Short, actual.Short);
            Assert.Equal(expected.Int, actual.Int);
            Assert.Equal(expected.Long, actual.Long);
            Assert.Equal(expected.Float, actual.Float);
            Assert.Equal(expected.Double, actual.Double);
            Assert.Equal(expected.Decimal, actual.Decimal);
            Assert.Equal(expected.Guid, actual.Guid);
            Assert.Equal(expected.DateTime, actual.DateTime);
            Assert.Equal(expected.DateTime.Kind, actual.DateTime.Kind);
            Assert.Equal(expected.DateTimeOffset, actual.DateTimeOffset);
            Assert.Equal(expected.DateTimeOffset.Offset, actual.DateTimeOffset.Offset);
            Assert.Equal(expected.DateOnly, actual.DateOnly);
            Assert.Equal(expected.TimeOnly, actual.TimeOnly);
            Assert.Equal(expected.TimeSpan, actual.TimeSpan);
            Assert.Equal(expected.Enum, actual.Enum);
            Assert.Equal(expected.NullableInt, actual.NullableInt);
            Assert.Equal(expected.NullableGuid, actual.NullableGuid);
            Assert.Equal(expected.NullableEnum, actual.NullableEnum);
            Assert.Equal(expected.NullableDateTime, actual.NullableDateTime);
        }
    }

    [Fact]
    public async Task Null_stays_null_in_the_database_and_in_the_entity()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync(NewPatient(diagnosis: null));

        Assert.Null(await ReadRawAsync("Patients", "Diagnosis", "Id", patient.Id));
        Assert.Null((await LoadAsync(patient.Id)).Diagnosis);
    }

    [Fact]
    public async Task Columns_hold_versioned_binary_ciphertext_and_never_the_plaintext()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();

        var ssn = await ReadRawAsync("Patients", "Ssn", "Id", patient.Id);
        var key = await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id);
        var street = await ReadRawAsync("Patients", "HomeAddress_Street", "Id", patient.Id);

        Assert.NotNull(ssn);
        Assert.Equal(2, ssn[0]);
        Assert.Equal(1 + 12 + Encoding.UTF8.GetByteCount(patient.Ssn) + 16, ssn.Length);
        Assert.Equal(2, key![0]);
        Assert.NotNull(street);
        foreach (var blob in new[] { ssn, key, street })
        {
            Assert.Equal(-1, blob.AsSpan().IndexOf(Encoding.UTF8.GetBytes(patient.Ssn)));
            Assert.Equal(-1, blob.AsSpan().IndexOf(Encoding.UTF8.GetBytes(patient.HomeAddress!.Street)));
        }
    }

    [Fact]
    public async Task Each_record_gets_its_own_data_key_and_each_value_its_own_nonce()
    {
        SkipIfUnavailable();
        var first = await InsertAsync(NewPatient(ssn: "111-11-1111", diagnosis: "111-11-1111"));
        var second = await InsertAsync(NewPatient(ssn: "111-11-1111", diagnosis: "111-11-1111"));

        var firstKey = (await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", first.Id))!;
        var secondKey = (await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", second.Id))!;
        var firstSsn = (await ReadRawAsync("Patients", "Ssn", "Id", first.Id))!;
        var firstDiagnosis = (await ReadRawAsync("Patients", "Diagnosis", "Id", first.Id))!;
        var secondSsn = (await ReadRawAsync("Patients", "Ssn", "Id", second.Id))!;
        var firstOwnedKey = (await ReadRawAsync("Patients", "HomeAddress_EfEnvelopeKey", "Id", first.Id))!;

        // Record ids (bytes 2..17) and wrapped data keys (the 60 bytes after the header) differ between records and
        // between an entity and its owned instance, while both records share the cached KEK (the header after the
        // record id). Each record ends in its own seal.
        var headerEnd = KeyBlobLayout.HeaderEnd(firstKey);
        Assert.Equal(headerEnd, KeyBlobLayout.HeaderEnd(secondKey));
        Assert.False(firstKey.AsSpan(2, 16).SequenceEqual(secondKey.AsSpan(2, 16)));
        Assert.False(firstKey.AsSpan(2, 16).SequenceEqual(firstOwnedKey.AsSpan(2, 16)));
        Assert.False(firstKey.AsSpan(headerEnd, 60).SequenceEqual(secondKey.AsSpan(headerEnd, 60)));
        Assert.True(firstKey.AsSpan(18, headerEnd - 18).SequenceEqual(secondKey.AsSpan(18, headerEnd - 18)));
        Assert.False(firstKey.AsSpan(firstKey.Length - 32).SequenceEqual(secondKey.AsSpan(secondKey.Length - 32)));

        // The same plaintext encrypts differently in another record and in another property of the same record.
        Assert.False(firstSsn.AsSpan(1, 12).SequenceEqual(secondSsn.AsSpan(1, 12)));
        Assert.False(firstSsn.AsSpan(1, 12).SequenceEqual(firstDiagnosis.AsSpan(1, 12)));
        Assert.False(firstSsn.AsSpan(13).SequenceEqual(secondSsn.AsSpan(13)));
        Assert.False(firstSsn.AsSpan(13).SequenceEqual(firstDiagnosis.AsSpan(13)));
    }

    [Fact]
    public async Task Saving_without_edits_sends_no_update()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var sql = new SqlCapture();
        await using var db = Fixture.CreateContext(null, sql);
        var loaded = await db.Patients.Include(p => p.Visits).SingleAsync(p => p.Id == patient.Id, Ct);
        sql.Clear();

        Assert.False(db.ChangeTracker.HasChanges());
        Assert.Equal(0, await db.SaveChangesAsync(Ct));
        Assert.Equal(0, db.SaveChanges());

        Assert.Empty(sql.Commands);
        Assert.Equal(patient.Ssn, loaded.Ssn);
    }

    [Fact]
    public async Task Editing_one_encrypted_property_updates_only_its_ciphertext()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var keyBefore = await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id);
        var diagnosisBefore = await ReadRawAsync("Patients", "Diagnosis", "Id", patient.Id);
        var sql = new SqlCapture();

        await using (var db = Fixture.CreateContext(null, sql))
        {
            var loaded = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            loaded.Ssn = "987-65-4321";
            Assert.Equal(EntityState.Modified, db.Entry(loaded).State);
            sql.Clear();
            Assert.Equal(1, await db.SaveChangesAsync(Ct));
        }

        var update = Assert.Single(sql.Updates);
        Assert.Contains("\"Ssn\"", update.Replace('[', '"').Replace(']', '"'), StringComparison.Ordinal);
        foreach (var untouched in new[] { "Diagnosis", "DateOfBirth", "Name", "HomeAddress_Street" })
        {
            Assert.DoesNotContain($"\"{untouched}\"", update.Replace('[', '"').Replace(']', '"'), StringComparison.Ordinal);
        }

        // The key column is rewritten with a new record seal, over the same record id and wrapped data key.
        Assert.Contains("\"EfEnvelopeKey\"", update.Replace('[', '"').Replace(']', '"'), StringComparison.Ordinal);
        var keyAfter = (await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id))!;
        var trailer = KeyBlobLayout.TrailerStart(keyBefore!);
        Assert.Equal(keyBefore![..trailer], keyAfter[..trailer]);
        Assert.NotEqual(keyBefore[^32..], keyAfter[^32..]);
        Assert.Equal(diagnosisBefore, await ReadRawAsync("Patients", "Diagnosis", "Id", patient.Id));
        var reread = await LoadAsync(patient.Id);
        Assert.Equal("987-65-4321", reread.Ssn);
        Assert.Equal(patient.Diagnosis, reread.Diagnosis);
    }

    [Fact]
    public async Task Editing_an_owned_encrypted_property_is_saved()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();

        await using (var db = Fixture.CreateContext())
        {
            var loaded = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            loaded.HomeAddress!.Street = "1 New Street";
            loaded.Emergency!.Phone = "+1-555-0199";
            db.SaveChanges();
        }

        var reread = await LoadAsync(patient.Id);
        Assert.Equal("1 New Street", reread.HomeAddress!.Street);
        Assert.Equal("+1-555-0199", reread.Emergency!.Phone);
    }

    [Fact]
    public async Task Reload_shows_the_value_now_in_the_database()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using var db = Fixture.CreateContext();
        var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);

        await using (var other = Fixture.CreateContext())
        {
            var elsewhere = await other.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            elsewhere.Ssn = "222-22-2222";
            elsewhere.Diagnosis = "Changed elsewhere";
            await other.SaveChangesAsync(Ct);
        }

        await db.Entry(tracked).ReloadAsync(Ct);

        Assert.Equal("222-22-2222", tracked.Ssn);
        Assert.Equal("Changed elsewhere", tracked.Diagnosis);
        Assert.Equal(EntityState.Unchanged, db.Entry(tracked).State);
        Assert.Equal(0, await db.SaveChangesAsync(Ct));
    }

    [Fact]
    public async Task Reload_discards_a_local_edit_as_plain_EF_does()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using (var db = Fixture.CreateContext())
        {
            var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            tracked.Diagnosis = "Discarded";
            tracked.Name = "Discarded too";

            await db.Entry(tracked).ReloadAsync(Ct);

            Assert.Equal(patient.Diagnosis, tracked.Diagnosis);
            Assert.Equal(patient.Name, tracked.Name);
            Assert.Equal(EntityState.Unchanged, db.Entry(tracked).State);
            Assert.Equal(0, await db.SaveChangesAsync(Ct));
        }

        Assert.Equal(patient.Diagnosis, (await LoadAsync(patient.Id)).Diagnosis);
    }

    [Fact]
    public async Task Setting_the_state_to_Unchanged_rejects_a_local_edit_as_plain_EF_does()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using (var db = Fixture.CreateContext())
        {
            var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            tracked.Ssn = "999-99-9999";
            tracked.Name = "Rejected";

            db.Entry(tracked).State = EntityState.Unchanged;

            // EF puts its own properties back to their original values; the encrypted ones follow.
            Assert.Equal(patient.Name, tracked.Name);
            Assert.Equal(patient.Ssn, tracked.Ssn);
            Assert.Equal(0, await db.SaveChangesAsync(Ct));
        }

        Assert.Equal(patient.Ssn, (await LoadAsync(patient.Id)).Ssn);
    }

    [Fact]
    public async Task Restoring_original_values_then_Unchanged_writes_nothing()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using (var db = Fixture.CreateContext())
        {
            var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            tracked.Diagnosis = "Edited, then restored";
            var entry = db.Entry(tracked);
            entry.CurrentValues.SetValues(entry.OriginalValues);
            entry.State = EntityState.Unchanged;

            Assert.Equal(patient.Diagnosis, tracked.Diagnosis);
            Assert.Equal(0, await db.SaveChangesAsync(Ct));
        }

        Assert.Equal(patient.Diagnosis, (await LoadAsync(patient.Id)).Diagnosis);
    }

    [Fact]
    public async Task Original_or_database_values_copied_over_an_edit_take_it_back_as_for_a_plain_property()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using (var db = Fixture.CreateContext())
        {
            var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            tracked.Diagnosis = "Edited, then restored";
            db.Entry(tracked).CurrentValues.SetValues(db.Entry(tracked).OriginalValues);
            Assert.Equal(patient.Diagnosis, tracked.Diagnosis);

            tracked.Diagnosis = "Edited again";
            db.Entry(tracked).CurrentValues.SetValues((await db.Entry(tracked).GetDatabaseValuesAsync(Ct))!);
            Assert.Equal(patient.Diagnosis, tracked.Diagnosis);

            // As in plain EF, the properties the copy set stay modified: the stored value is written again.
            Assert.Equal(1, await db.SaveChangesAsync(Ct));
        }

        Assert.Equal(patient.Diagnosis, (await LoadAsync(patient.Id)).Diagnosis);
    }

    [Fact]
    public async Task A_save_keeps_the_saved_values_while_accepting_them()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using (var db = Fixture.CreateContext())
        {
            var tracked = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            tracked.Diagnosis = "Saved";
            Assert.Equal(1, await db.SaveChangesAsync(Ct));

            Assert.Equal("Saved", tracked.Diagnosis);
            Assert.Equal(EntityState.Unchanged, db.Entry(tracked).State);
            tracked.Diagnosis = "Saved, then rejected";
            db.Entry(tracked).State = EntityState.Unchanged;
            Assert.Equal("Saved", tracked.Diagnosis);
        }

        Assert.Equal("Saved", (await LoadAsync(patient.Id)).Diagnosis);
    }

    [Fact]
    public async Task Update_of_a_detached_instance_encrypts_every_property()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var detached = NewPatient(ssn: "333-33-3333", diagnosis: "Detached edit");
        detached.Id = patient.Id;

        await using (var db = Fixture.CreateContext())
        {
            db.Update(detached);
            await db.SaveChangesAsync(Ct);
        }

        var reread = await LoadAsync(patient.Id);
        Assert.Equal("333-33-3333", reread.Ssn);
        Assert.Equal("Detached edit", reread.Diagnosis);
        Assert.Equal(detached.DateOfBirth, reread.DateOfBirth);
        Assert.Equal(detached.HomeAddress!.Street, reread.HomeAddress!.Street);
    }

    [Fact]
    public async Task Attach_then_edit_encrypts_the_edit()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var detached = await LoadAsync(patient.Id);

        await using (var db = Fixture.CreateContext())
        {
            db.Attach(detached);
            detached.Diagnosis = "Edited after attach";
            db.SaveChanges();
        }

        var reread = await LoadAsync(patient.Id);
        Assert.Equal("Edited after attach", reread.Diagnosis);
        Assert.Equal(patient.Ssn, reread.Ssn);
        Assert.Equal(patient.DateOfBirth, reread.DateOfBirth);
    }

    [Fact]
    public async Task No_tracking_and_identity_resolution_queries_return_plaintext()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using var db = Fixture.CreateContext();

        var noTracking = await db.Patients.AsNoTracking().SingleAsync(p => p.Id == patient.Id, Ct);
        var resolved = db.Patients.AsNoTrackingWithIdentityResolution().Where(p => p.Id == patient.Id).ToList().Single();

        Assert.Equal(patient.Ssn, noTracking.Ssn);
        Assert.Equal(patient.HomeAddress!.Street, noTracking.HomeAddress!.Street);
        Assert.Equal(patient.Diagnosis, resolved.Diagnosis);
        Assert.Equal(patient.Emergency!.Phone, resolved.Emergency!.Phone);
        Assert.Empty(db.ChangeTracker.Entries());
    }

    [Fact]
    public async Task Projections_that_select_encrypted_properties_return_plaintext()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using var db = Fixture.CreateContext();

        var projected = await db.Patients.Where(p => p.Id == patient.Id)
            .Select(p => new { p.Name, p.Ssn, Street = p.HomeAddress!.Street, Born = p.DateOfBirth.Year })
            .SingleAsync(Ct);
        var scalar = db.Patients.Where(p => p.Id == patient.Id).Select(p => p.Diagnosis).First();

        Assert.Equal(patient.Ssn, projected.Ssn);
        Assert.Equal(patient.HomeAddress!.Street, projected.Street);
        Assert.Equal(1980, projected.Born);
        Assert.Equal(patient.Diagnosis, scalar);
    }

    [Fact]
    public async Task FromSql_entity_queries_return_plaintext()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using var db = Fixture.CreateContext();

        var loaded = await db.Patients.FromSqlRaw("SELECT * FROM \"Patients\"").Where(p => p.Id == patient.Id).SingleAsync(Ct);

        Assert.Equal(patient.Ssn, loaded.Ssn);
        Assert.Equal(patient.Emergency!.Phone, loaded.Emergency!.Phone);
    }

    // SQL written for the plain model leaves out the record's key column. Composed over (Where), the database reports a
    // missing column; read as it is, EF reports a missing result column. Either way the application gets EfEnvelope's
    // refusal naming the entity and the column, with the original error inside.
    [Fact]
    public async Task FromSql_without_the_key_column_is_refused_naming_entity_and_column()
    {
        SkipIfUnavailable();
        var invoice = await InsertInvoiceAsync(3m);

        await using var db = Fixture.CreateContext();
        const string sql = "SELECT \"Id\", \"CardNumber\", \"Amount\" FROM \"Invoices\"";
        var composed = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Invoices.FromSqlRaw(sql).Where(i => i.Id == invoice.Id).SingleAsync(Ct));
        var uncomposed = Assert.Throws<InvalidOperationException>(() => db.Invoices.FromSqlRaw(sql).AsNoTracking().ToList());
        var streamed = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            await foreach (var _ in db.Invoices.FromSqlRaw(sql).OrderBy(i => i.Id).AsAsyncEnumerable().WithCancellation(Ct))
            {
            }
        });

        foreach (var error in new[] { composed, uncomposed, streamed })
        {
            Assert.Contains("reads 'Invoice' through FromSql", error.Message);
            Assert.Contains("column 'EfEnvelopeKey'", error.Message);
            Assert.DoesNotContain("4111111111111111", error.Message);
            Assert.NotNull(error.InnerException);
        }

        Assert.Equal(invoice.CardNumber, (await db.Invoices.FromSqlRaw("SELECT * FROM \"Invoices\"").SingleAsync(i => i.Id == invoice.Id, Ct)).CardNumber);
    }

    [Fact]
    public async Task Fluent_IsEncrypted_encrypts_like_the_attribute()
    {
        SkipIfUnavailable();
        var invoice = await InsertInvoiceAsync(12.5m);

        var raw = await ReadRawAsync("Invoices", "CardNumber", "Id", invoice.Id);
        await using var reader = Fixture.CreateContext();
        var loaded = await reader.Invoices.SingleAsync(i => i.Id == invoice.Id, Ct);

        Assert.Equal(-1, raw!.AsSpan().IndexOf("4111111111111111"u8));
        Assert.Equal("4111111111111111", loaded.CardNumber);
    }

    [Fact]
    public async Task Store_generated_keys_and_records_added_through_navigations_are_encrypted()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using (var db = Fixture.CreateContext())
        {
            var loaded = await db.Patients.SingleAsync(p => p.Id == patient.Id, Ct);
            loaded.Visits.Add(new Visit { At = DateTime.UtcNow, Notes = "Follow-up in two weeks" });
            loaded.Visits.Add(new Visit { At = DateTime.UtcNow, Notes = "Blood pressure 130/85" });
            await db.SaveChangesAsync(Ct);
        }

        await using var reader = Fixture.CreateContext();
        var visits = await reader.Visits.Where(v => v.PatientId == patient.Id).OrderBy(v => v.Id).ToListAsync(Ct);
        Assert.Equal(["Follow-up in two weeks", "Blood pressure 130/85"], visits.Select(v => v.Notes));
        Assert.All(visits, v => Assert.True(v.Id > 0));
        var raw = await ReadRawAsync("Visits", "Notes", "Id", visits[0].Id);
        Assert.Equal(-1, raw!.AsSpan().IndexOf("Follow-up"u8));
    }

    [Fact]
    public async Task Comparing_an_encrypted_property_is_refused_with_a_reason()
    {
        SkipIfUnavailable();
        await using var db = Fixture.CreateContext();

        #pragma warning disable EFENV001 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => db.Patients.Where(p => p.Ssn == "123-45-6789").ToListAsync(Ct));
        #pragma warning restore EFENV001

        Assert.Contains("Patient.Ssn", error.Message, StringComparison.Ordinal);
        Assert.Contains("ciphertext", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Ordering_by_an_encrypted_property_is_refused_with_a_reason()
    {
        SkipIfUnavailable();
        using var db = Fixture.CreateContext();

        #pragma warning disable EFENV002 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var error = Assert.Throws<InvalidOperationException>(() => db.Patients.OrderBy(p => p.DateOfBirth).ToList());
        #pragma warning restore EFENV002

        Assert.Contains("Patient.DateOfBirth", error.Message, StringComparison.Ordinal);
        Assert.Contains("no order", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pattern_matching_on_an_encrypted_property_is_refused_with_a_reason()
    {
        SkipIfUnavailable();
        using var db = Fixture.CreateContext();

        #pragma warning disable EFENV003 // The analyzer warns at compile time about what this test expects to be refused at run time.
        var error = Assert.Throws<InvalidOperationException>(() => db.Patients.Where(p => p.Diagnosis!.StartsWith("Hyper")).ToList());
        #pragma warning restore EFENV003

        Assert.Contains("Patient.Diagnosis", error.Message, StringComparison.Ordinal);
        Assert.Contains("StartsWith", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExecuteUpdate_setting_an_encrypted_property_is_refused_and_changes_nothing()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using var db = Fixture.CreateContext();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            #pragma warning disable EFENV005 // The analyzer warns at compile time about what this test expects to be refused at run time.
            db.Patients.Where(p => p.Id == patient.Id).ExecuteUpdateAsync(s => s.SetProperty(p => p.Ssn, "000-00-0000"), Ct));
            #pragma warning restore EFENV005

        Assert.Contains("Patient.Ssn", error.Message, StringComparison.Ordinal);
        Assert.Contains("SaveChanges", error.Message, StringComparison.Ordinal);
        Assert.Equal(patient.Ssn, (await LoadAsync(patient.Id)).Ssn);
    }

    [Fact]
    public async Task ExecuteUpdate_of_plain_properties_still_works()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await using var db = Fixture.CreateContext();

        await db.Patients.Where(p => p.Id == patient.Id).ExecuteUpdateAsync(s => s.SetProperty(p => p.Name, "Renamed"), Ct);

        var reread = await LoadAsync(patient.Id);
        Assert.Equal("Renamed", reread.Name);
        Assert.Equal(patient.Ssn, reread.Ssn);
    }

    [Fact]
    public async Task Ciphertext_copied_into_another_column_of_the_same_row_is_a_tamper_error()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await WriteRawAsync("Patients", "Diagnosis", "Id", patient.Id, await ReadRawAsync("Patients", "Ssn", "Id", patient.Id));

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(patient.Id));

        AssertNamesLocationWithoutPlaintext(error, "Diagnosis", patient);
    }

    [Fact]
    public async Task Ciphertext_copied_into_another_row_is_a_tamper_error()
    {
        SkipIfUnavailable();
        var victim = await InsertAsync();
        var source = await InsertAsync(NewPatient(ssn: "444-44-4444"));
        await WriteRawAsync("Patients", "Ssn", "Id", victim.Id, await ReadRawAsync("Patients", "Ssn", "Id", source.Id));

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(victim.Id));

        AssertNamesLocationWithoutPlaintext(error, "Ssn", source);
    }

    [Fact]
    public async Task Ciphertext_and_wrapped_key_copied_into_another_table_are_a_tamper_error()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var invoice = new Invoice { CardNumber = "5500000000000004", Amount = 1 };
        await using (var db = Fixture.CreateContext())
        {
            db.Invoices.Add(invoice);
            await db.SaveChangesAsync(Ct);
        }

        // Both the patient's key and its ciphertext move together: the entity binding still refuses them.
        await WriteRawAsync("Invoices", "EfEnvelopeKey", "Id", invoice.Id, await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id));
        await WriteRawAsync("Invoices", "CardNumber", "Id", invoice.Id, await ReadRawAsync("Patients", "Ssn", "Id", patient.Id));

        await using var reader = Fixture.CreateContext();
        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => reader.Invoices.Where(i => i.Id == invoice.Id).ToListAsync(Ct));
        Assert.Contains(typeof(Invoice).FullName!, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(patient.Ssn, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Owned_ciphertext_moved_to_the_owner_is_a_tamper_error()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        await WriteRawAsync("Patients", "Ssn", "Id", patient.Id, await ReadRawAsync("Patients", "HomeAddress_Street", "Id", patient.Id));

        await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(patient.Id));
    }

    [Fact]
    public async Task A_flipped_byte_is_a_tamper_error_naming_entity_property_and_key()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var ssn = (await ReadRawAsync("Patients", "Ssn", "Id", patient.Id))!;
        ssn[ssn.Length / 2] ^= 0x40;
        await WriteRawAsync("Patients", "Ssn", "Id", patient.Id, ssn);

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(patient.Id));

        AssertNamesLocationWithoutPlaintext(error, "Ssn", patient);
        Assert.Equal(Fixture.Provider.PrimaryKeyId, error.KeyId);
    }

    [Fact]
    public async Task A_truncated_or_flipped_wrapped_key_is_a_tamper_error()
    {
        SkipIfUnavailable();
        var patient = await InsertAsync();
        var key = (await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id))!;

        await WriteRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id, key[..^1]);
        var truncated = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(patient.Id));

        var flipped = key.ToArray();
        flipped[^20] ^= 0x01;
        await WriteRawAsync("Patients", "EfEnvelopeKey", "Id", patient.Id, flipped);
        var tampered = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(patient.Id));

        Assert.Equal(typeof(Patient).FullName, truncated.Entity);
        Assert.Equal(typeof(Patient).FullName, tampered.Entity);
    }

    [Fact]
    public async Task Data_under_a_different_master_key_with_the_same_id_is_a_tamper_error()
    {
        SkipIfUnavailable();
        var impostor = new InsecureInMemoryMasterKeyProvider(Fixture.Provider.PrimaryKeyId);
        var patient = NewPatient();
        await using (var db = Fixture.CreateContext(e => e.UseProvider(impostor)))
        {
            db.Patients.Add(patient);
            await db.SaveChangesAsync(Ct);
        }

        if (Fixture.Provider.Name != impostor.Name)
        {
            await Assert.ThrowsAsync<MasterKeyException>(() => LoadAsync(patient.Id));
            return;
        }

        var error = await Assert.ThrowsAsync<EnvelopeDecryptionException>(() => LoadAsync(patient.Id));
        Assert.Equal(typeof(Patient).FullName, error.Entity);
    }

    [Fact]
    public async Task A_provider_failure_during_save_writes_nothing_and_a_retry_succeeds()
    {
        SkipIfUnavailable();
        var faulty = new FaultInjectingProvider(Fixture.Provider);
        var sql = new SqlCapture();
        await using var db = Fixture.CreateContext(e => e.UseProvider(faulty), sql);
        var patients = Enumerable.Range(0, 20).Select(i => NewPatient(ssn: $"555-55-{i:0000}")).ToList();
        var invoice = new Invoice { CardNumber = "4000000000000002", Amount = 3 };
        db.Patients.AddRange(patients);
        db.Invoices.Add(invoice);

        faulty.FailNext(1);
        await Assert.ThrowsAsync<MasterKeyException>(() => db.SaveChangesAsync(Ct));

        Assert.DoesNotContain(sql.Commands, c => c.Contains("INSERT", StringComparison.OrdinalIgnoreCase));
        Assert.All(patients, p => Assert.Equal(EntityState.Added, db.Entry(p).State));
        Assert.All(patients, p => Assert.Null(db.Entry(p).Property<byte[]?>("EfEnvelopeKey").CurrentValue));
        Assert.Equal("555-55-0000", patients[0].Ssn);

        await db.SaveChangesAsync(Ct);

        Assert.All(patients, p => Assert.Equal(EntityState.Unchanged, db.Entry(p).State));
        Assert.Equal("555-55-0007", (await LoadAsync(patients[7].Id)).Ssn);
    }

    [Fact]
    public async Task Direct_mode_wraps_each_record_by_the_provider_and_reads_back()
    {
        SkipIfUnavailable();
        var counting = new FaultInjectingProvider(Fixture.Provider);
        void Direct(EnvelopeEncryptionOptionsBuilder e) => e.UseProvider(counting).UseKeyWrappingMode(KeyWrappingMode.Direct);
        var patients = Enumerable.Range(0, 5).Select(i => NewPatient(ssn: $"666-66-{i:0000}")).ToList();

        await using (var db = Fixture.CreateContext(Direct))
        {
            db.Patients.AddRange(patients);
            db.SaveChanges();
        }

        // Five patients and five owned addresses (the JSON-owned contact is a record too): one call each.
        Assert.Equal(15, counting.Calls);
        var raw = await ReadRawAsync("Patients", "EfEnvelopeKey", "Id", patients[0].Id);
        Assert.Equal(2, raw![1]);

        await using var reader = Fixture.CreateContext(Direct);
        var ids = patients.Select(p => p.Id).ToList();
        var loaded = await reader.Patients.Where(p => ids.Contains(p.Id)).ToListAsync(Ct);
        Assert.Equal(patients.Select(p => p.Ssn).Order(), loaded.Select(p => p.Ssn).Order());
    }

    private static void AssertNamesLocationWithoutPlaintext(EnvelopeDecryptionException error, string property, Patient patient)
    {
        Assert.Equal(typeof(Patient).FullName, error.Entity);
        Assert.Equal(property, error.Property);
        Assert.Contains(property, error.Message, StringComparison.Ordinal);
        foreach (var secret in new[] { patient.Ssn, patient.Diagnosis ?? "\u0001", patient.HomeAddress!.Street })
        {
            Assert.DoesNotContain(secret, error.ToString(), StringComparison.Ordinal);
        }
    }
}
