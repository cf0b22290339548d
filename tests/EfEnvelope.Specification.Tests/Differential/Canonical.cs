using System.Collections;
using System.Globalization;
using System.Reflection;

namespace EfEnvelope.Specification.Tests.Differential;

/// <summary>
/// Turns an observed value into text that is equal exactly when the values are observably equal: scalars in invariant
/// form (a DateTime keeps its Kind), sequences element by element, other objects as their runtime type and public
/// properties. Properties whose type is in <c>skip</c> (navigations to other entities) are left out, and an object met
/// again on its own path (a navigation back to its principal) is written as a back reference.
/// </summary>
public static class Canonical
{
    public static string Format(object? value, IReadOnlySet<Type>? skip = null) =>
        Format(value, skip ?? new HashSet<Type>(), new HashSet<object>(ReferenceEqualityComparer.Instance));

    private static string Format(object? value, IReadOnlySet<Type> skip, HashSet<object> path)
    {
        switch (value)
        {
            case null:
                return "null";
            case string s:
                return "\"" + s + "\"";
            case byte[] bytes:
                return "0x" + Convert.ToHexString(bytes);
            case DateTime d:
                return d.ToString("O", CultureInfo.InvariantCulture);
            case DateTimeOffset d:
                return d.ToString("O", CultureInfo.InvariantCulture);
            case decimal d:
                // 12.50m and 12.5m are equal values; the scale a database hands back is not an observable difference.
                return d.ToString("G29", CultureInfo.InvariantCulture);
            case Enum e:
                return e.GetType().Name + "." + e;
            case IFormattable f when value.GetType().IsPrimitive || value is Guid or DateOnly or TimeOnly or TimeSpan:
                return f.ToString(null, CultureInfo.InvariantCulture);
            case bool b:
                return b ? "true" : "false";
            case IDictionary dictionary:
                return "{" + string.Join(", ", dictionary.Keys.Cast<object>().Select(k => Format(k, skip, path) + ": " + Format(dictionary[k], skip, path)).Order(StringComparer.Ordinal)) + "}";
            case IEnumerable sequence:
                return "[" + string.Join(", ", sequence.Cast<object?>().Select(v => Format(v, skip, path))) + "]";
        }

        var type = value.GetType();
        if (!path.Add(value))
        {
            return "^" + Name(type);
        }

        var members = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && !p.Name.Equals("EqualityContract", StringComparison.Ordinal) && !IsSkipped(p.PropertyType, skip))
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .Select(p => p.Name + "=" + Format(p.GetValue(value), skip, path))
            .ToList();
        path.Remove(value);
        return Name(type) + "{" + string.Join(", ", members) + "}";
    }

    private static bool IsSkipped(Type type, IReadOnlySet<Type> skip) =>
        skip.Any(s => s.IsAssignableFrom(type))
        || (type != typeof(string) && type.GetInterfaces().Append(type).Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>) && skip.Any(s => s.IsAssignableFrom(i.GetGenericArguments()[0]))));

    // Anonymous types get compiler-generated names that differ between the two lambdas of a scenario: name them by shape.
    private static string Name(Type type) => type.Name.Contains("AnonymousType", StringComparison.Ordinal) ? "anon" : type.Name;
}
