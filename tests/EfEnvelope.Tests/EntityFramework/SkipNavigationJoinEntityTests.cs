using Microsoft.EntityFrameworkCore;

namespace EfEnvelope.Tests.EntityFramework;

/// <summary>
/// A many-to-many relationship whose join entity has an encrypted property: adding to and removing from the skip
/// navigation works as in plain EF, and the join row's value is stored encrypted. Found by a user-style review: adding
/// through the skip navigation threw NullReferenceException inside EF, which creates the join entity without a row.
/// </summary>
public sealed class SkipNavigationJoinEntityTests : PlainAndEncryptedSqlite
{
    private const string Grade = "A-minus, with distinction";



    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [MemberData(nameof(Encryption))]
    public async Task Adding_through_the_skip_navigation_creates_a_join_record_that_is_edited_read_and_removed_as_in_plain_EF(bool encrypted)
    {
        await using (var db = Create(encrypted))
        {
            await db.Database.EnsureCreatedAsync(Ct);
            var student = new Student { Id = 1 };
            student.Courses.Add(new Course { Id = 10 });
            student.Courses.Add(new Course { Id = 11 });
            db.Add(student);
            Assert.Equal(2, db.ChangeTracker.Entries<Enrollment>().Count(e => e.State == EntityState.Added));
            await db.SaveChangesAsync(Ct);
        }

        await using (var db = Create(encrypted))
        {
            var enrollments = await db.Set<Enrollment>().OrderBy(e => e.CourseId).ToListAsync(Ct);
            Assert.Equal([(1, 10, (string?)null), (1, 11, null)], enrollments.Select(e => (e.StudentId, e.CourseId, e.Grade)));
            enrollments[0].Grade = Grade;
            await db.SaveChangesAsync(Ct);
        }

        using (var command = Connection.CreateCommand())
        {
            command.CommandText = "SELECT Grade FROM Enrollment WHERE CourseId = 10";
            var stored = command.ExecuteScalar();
            Assert.Equal(encrypted, stored is byte[]);
            if (stored is byte[] ciphertext)
            {
                Assert.DoesNotContain("distinction", System.Text.Encoding.UTF8.GetString(ciphertext), StringComparison.Ordinal);
            }
        }

        await using (var db = Create(encrypted))
        {
            var student = await db.Set<Student>().Include(s => s.Courses).SingleAsync(Ct);
            Assert.Equal([10, 11], student.Courses.Select(c => c.Id).Order());
            Assert.Equal(Grade, (await db.Set<Enrollment>().SingleAsync(e => e.CourseId == 10, Ct)).Grade);
            student.Courses.RemoveAll(c => c.Id == 10);
            await db.SaveChangesAsync(Ct);
        }

        await using var check = Create(encrypted);
        Assert.Equal([(11, (string?)null)], (await check.Set<Enrollment>().AsNoTracking().ToListAsync(Ct)).Select(e => (e.CourseId, e.Grade)));
    }

    private SchoolContext Create(bool encrypted)
    {
        var options = Options(encrypted);
        return encrypted ? new EncryptedSchoolContext(options) : new SchoolContext(options);
    }

    private sealed class Student
    {
        public int Id { get; set; }

        public List<Course> Courses { get; } = [];
    }

    private sealed class Course
    {
        public int Id { get; set; }

        public List<Student> Students { get; } = [];
    }

    private sealed class Enrollment
    {
        public int StudentId { get; set; }

        public int CourseId { get; set; }

        public string? Grade { get; set; }
    }

    // Two context types, because EF builds one model per context type.
    private class SchoolContext(DbContextOptions options) : DbContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder) =>
            modelBuilder.Entity<Student>().HasMany(s => s.Courses).WithMany(c => c.Students).UsingEntity<Enrollment>(
                toCourse => toCourse.HasOne<Course>().WithMany().HasForeignKey(e => e.CourseId),
                toStudent => toStudent.HasOne<Student>().WithMany().HasForeignKey(e => e.StudentId));
    }

    private sealed class EncryptedSchoolContext(DbContextOptions options) : SchoolContext(options)
    {
        protected override void OnModelCreating(ModelBuilder modelBuilder)
        {
            base.OnModelCreating(modelBuilder);
            modelBuilder.Entity<Enrollment>().Property(e => e.Grade).IsEncrypted();
        }
    }
}
