using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.RegularExpressions;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// Says what is wrong with a request body in JSON terms: the property (its JSON path) and the JSON
/// type it must have. The serializer's own messages name the .NET types it was filling
/// ("could not be converted to LoyaltyLedger.Ledger.NewBill"), which mean nothing to a client.
/// </summary>
public static partial class JsonErrors
{
    /// <summary>A JSON path as a client reads it: <c>$.loads[0].value</c> is <c>loads[0].value</c>; <c>$</c> is the body.</summary>
    public static string Name(string? path) =>
        string.IsNullOrEmpty(path) || path == "$" ? "The body"
        : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..]
        : path.StartsWith('$') ? path[1..]
        : path;

    public static string Describe(JsonException error, Type? requestType, JsonSerializerOptions options)
    {
        var name = Name(error.Path);
        var where = name == "The body" ? "" : $" at {name}";

        // Not well-formed JSON: the reader's message is about JSON text (a stray brace, an
        // unclosed string), so it is kept, with the position made one-based.
        if (IsReaderError(error))
        {
            var reason = ReaderReason(error.InnerException?.Message ?? error.Message);
            var position = error.LineNumber is { } line && error.BytePositionInLine is { } bytes
                ? $" (line {line + 1}, byte {bytes + 1})" : "";
            return reason is null
                ? $"The body is not well-formed JSON{position}."
                : $"The body is not well-formed JSON{position}: {reason}";
        }

        if (error.Message.Contains("missing required properties", StringComparison.Ordinal))
        {
            var names = QuotedNames().Matches(error.Message[error.Message.IndexOf("including", StringComparison.Ordinal)..])
                .Select(m => m.Groups[1].Value).ToList();
            return names.Count == 0
                ? $"A required property is missing{where}."
                : $"{(where.Length == 0 ? "The body" : name)} is missing required {(names.Count == 1 ? "property" : "properties")}: {string.Join(", ", names)}.";
        }

        var expected = requestType is null ? null : TypeAt(requestType, error.Path, options);
        return expected is null
            ? $"The body does not have the shape this call takes{where}."
            : $"{name} must be {Describe(expected, options)}.";
    }

    private static bool IsReaderError(JsonException error) =>
        error.GetType().Name == "JsonReaderException" || error.InnerException?.GetType().Name == "JsonReaderException";

    private static string? ReaderReason(string message)
    {
        if (message.Contains("does not contain any JSON tokens", StringComparison.Ordinal)) return "it is empty.";
        var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        var reason = (cut >= 0 ? message[..cut] : message).Trim();
        var path = reason.IndexOf(" Path:", StringComparison.Ordinal);
        if (path >= 0) reason = reason[..path].Trim();
        return reason.Length == 0 || ErrorResponses.NamesDotNet(reason) || reason.Contains("isFinalBlock", StringComparison.Ordinal) ? null : reason;
    }

    [GeneratedRegex("'([^']+)'")]
    private static partial Regex QuotedNames();

    /// <summary>The .NET type the serializer was filling at <paramref name="path"/>, found by walking the request type.</summary>
    private static Type? TypeAt(Type root, string? path, JsonSerializerOptions options)
    {
        var type = root;
        foreach (var step in Steps(path ?? "$"))
        {
            type = Nullable.GetUnderlyingType(type) ?? type;
            var info = options.GetTypeInfo(type);
            if (step.Index)
            {
                if (info.Kind != JsonTypeInfoKind.Enumerable || info.ElementType is null) return null;
                type = info.ElementType;
            }
            else if (info.Kind == JsonTypeInfoKind.Dictionary && info.ElementType is not null)
            {
                type = info.ElementType;
            }
            else if (info.Kind == JsonTypeInfoKind.Object
                && info.Properties.FirstOrDefault(p => string.Equals(p.Name, step.Name, StringComparison.OrdinalIgnoreCase)) is { } property)
            {
                type = property.PropertyType;
            }
            else
            {
                return null;
            }
        }
        return type;
    }

    private readonly record struct Step(string Name, bool Index);

    /// <summary>The steps of a serializer path: <c>$.a.b[0]['c d']</c> is a, b, [0], c d.</summary>
    private static IEnumerable<Step> Steps(string path)
    {
        var i = path.StartsWith('$') ? 1 : 0;
        while (i < path.Length)
        {
            if (path[i] == '.')
            {
                var end = i + 1;
                while (end < path.Length && path[end] is not ('.' or '[')) end++;
                yield return new Step(path[(i + 1)..end], false);
                i = end;
            }
            else if (path.AsSpan(i).StartsWith("['"))
            {
                var end = path.IndexOf("']", i + 2, StringComparison.Ordinal);
                if (end < 0) yield break;
                yield return new Step(path[(i + 2)..end], false);
                i = end + 2;
            }
            else if (path[i] == '[')
            {
                var end = path.IndexOf(']', i);
                if (end < 0) yield break;
                yield return new Step(path[(i + 1)..end], true);
                i = end + 1;
            }
            else
            {
                yield break;
            }
        }
    }

    /// <summary>A .NET type as the JSON value a client must send for it.</summary>
    public static string Describe(Type type, JsonSerializerOptions options)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(string)) return "a string";
        if (type == typeof(bool)) return "true or false";
        if (type == typeof(Points)) return "points: a number or a numeric string with at most three decimals";
        if (type == typeof(DateTimeOffset) || type == typeof(DateTime)) return "a string holding " + IsoTime.ExpectedDateTime;
        if (type.IsEnum)
        {
            var names = new StringBuilder();
            foreach (var value in Enum.GetNames(type)) names.Append(names.Length == 0 ? "" : ", ").Append(value);
            return $"one of the strings {names}";
        }
        if (type == typeof(byte) || type == typeof(short) || type == typeof(int) || type == typeof(long)
            || type == typeof(ushort) || type == typeof(uint) || type == typeof(ulong) || type == typeof(sbyte))
            return "a whole number";
        if (type == typeof(decimal) || type == typeof(double) || type == typeof(float)) return "a number";
        return options.GetTypeInfo(type).Kind switch
        {
            JsonTypeInfoKind.Enumerable => "an array",
            JsonTypeInfoKind.Dictionary or JsonTypeInfoKind.Object => "a JSON object",
            _ => "a valid value",
        };
    }
}
