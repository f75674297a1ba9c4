using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LoyaltyLedger.Tests.Readme;

/// <summary>
/// An answer as the README writes it: JSON, plus <c>...</c> for "whatever else comes back". A bare
/// <c>...</c> or a string starting with <c>...</c> is any value; as an object member (<c>{"a":1,...}</c>) it
/// lets the object have more members than those written (without it the members must be exactly
/// those); as an array element it stands for any number of elements, so <c>[A,"...",B]</c> is an
/// array that starts with A and ends with B.
/// </summary>
public abstract partial record JsonPattern(string Source)
{
    public static JsonPattern Parse(string text)
    {
        var parser = new Parser(text, 0);
        var pattern = parser.Value();
        parser.SkipSpace();
        if (parser.Pos != text.Length) throw parser.Error("the end of the JSON");
        return pattern;
    }

    /// <summary>Parses the value that starts at <paramref name="start"/>; returns it and where it ends.</summary>
    public static (JsonPattern Pattern, int End) ParseAt(string text, int start)
    {
        var parser = new Parser(text, start);
        return (parser.Value(), parser.Pos);
    }

    /// <summary>Null when <paramref name="actual"/> fits; otherwise what differs, with its path.</summary>
    public abstract string? Mismatch(JsonElement actual, string path, IReadOnlySet<string> volatileFields);

    protected static string Show(JsonElement e)
    {
        var raw = e.GetRawText();
        return raw.Length <= 300 ? raw : raw[..300] + "...";
    }

    public sealed record AnyValue(string Source) : JsonPattern(Source)
    {
        public override string? Mismatch(JsonElement actual, string path, IReadOnlySet<string> volatileFields) => null;
    }

    public sealed record Scalar(string Source, JsonValueKind Kind, string? Text, decimal Number) : JsonPattern(Source)
    {
        public override string? Mismatch(JsonElement actual, string path, IReadOnlySet<string> volatileFields)
        {
            var fits = Kind switch
            {
                JsonValueKind.String => actual.ValueKind == JsonValueKind.String && actual.GetString() == Text,
                JsonValueKind.Number => actual.ValueKind == JsonValueKind.Number && actual.TryGetDecimal(out var n) && n == Number,
                _ => actual.ValueKind == Kind,
            };
            return fits ? null : $"{path}: expected {Source}, got {Show(actual)}";
        }
    }

    public sealed record Object(string Source, IReadOnlyList<KeyValuePair<string, JsonPattern>> Members, bool Open) : JsonPattern(Source)
    {
        public override string? Mismatch(JsonElement actual, string path, IReadOnlySet<string> volatileFields)
        {
            if (actual.ValueKind != JsonValueKind.Object) return $"{path}: expected an object, got {Show(actual)}";
            foreach (var (name, pattern) in Members)
            {
                if (!actual.TryGetProperty(name, out var value)) return $"{path}: no \"{name}\" in {Show(actual)}";
                if (volatileFields.Contains(name)) continue;
                if (pattern.Mismatch(value, $"{path}.{name}", volatileFields) is { } mismatch) return mismatch;
            }
            if (Open) return null;
            var extra = actual.EnumerateObject().Select(p => p.Name).Where(n => Members.All(m => m.Key != n)).ToList();
            return extra.Count == 0 ? null : $"{path}: also has {string.Join(", ", extra)} (write ... in the README where more comes back)";
        }
    }

    public sealed record Array(string Source, IReadOnlyList<JsonPattern?> Items) : JsonPattern(Source)
    {
        public override string? Mismatch(JsonElement actual, string path, IReadOnlySet<string> volatileFields)
        {
            if (actual.ValueKind != JsonValueKind.Array) return $"{path}: expected an array, got {Show(actual)}";
            var elements = actual.EnumerateArray().ToArray();
            if (Items.All(i => i is not null))
            {
                if (elements.Length != Items.Count) return $"{path}: {elements.Length} elements, expected {Items.Count}: {Show(actual)}";
                for (var i = 0; i < elements.Length; i++)
                    if (Items[i]!.Mismatch(elements[i], $"{path}[{i}]", volatileFields) is { } mismatch) return mismatch;
                return null;
            }
            if (Fits(0, 0, elements, volatileFields)) return null;
            if (elements.Length == 0) return $"{path}: empty, expected {Source}";
            var lost = Items.OfType<JsonPattern>().FirstOrDefault(p => elements.All(e => p.Mismatch(e, path, volatileFields) is not null));
            return lost is not null
                ? $"{path}: no element fits {lost.Source}; e.g. {lost.Mismatch(elements.FirstOrDefault(), path + "[0]", volatileFields)}"
                : $"{path}: the elements are not in the order written ({elements.Length} elements)";
        }

        /// <summary>Gaps (null items) take any number of elements; everything else fits one element, in order.</summary>
        private bool Fits(int item, int element, JsonElement[] elements, IReadOnlySet<string> volatileFields)
        {
            if (item == Items.Count) return element == elements.Length;
            if (Items[item] is not { } pattern)
            {
                for (var skip = element; skip <= elements.Length; skip++)
                    if (Fits(item + 1, skip, elements, volatileFields)) return true;
                return false;
            }
            return element < elements.Length && pattern.Mismatch(elements[element], "", volatileFields) is null
                && Fits(item + 1, element + 1, elements, volatileFields);
        }
    }

    [GeneratedRegex(@"\G-?\d+(\.\d+)?([eE][+-]?\d+)?")]
    private static partial Regex NumberToken();

    private sealed class Parser(string text, int pos)
    {
        public int Pos = pos;

        public FormatException Error(string wanted) =>
            new($"expected {wanted} at {Pos} in: {(text.Length > 400 ? text[..400] + "..." : text)}");

        public void SkipSpace()
        {
            while (Pos < text.Length && char.IsWhiteSpace(text[Pos])) Pos++;
        }

        private bool AtEllipsis() => string.CompareOrdinal(text, Pos, "...", 0, 3) == 0;

        public JsonPattern Value()
        {
            SkipSpace();
            if (Pos >= text.Length) throw Error("a value");
            var start = Pos;
            if (AtEllipsis())
            {
                Pos += 3;
                return new AnyValue("...");
            }
            switch (text[Pos])
            {
                case '{': return ObjectValue();
                case '[': return ArrayValue();
                case '"':
                    var s = StringValue();
                    return s.StartsWith("...", StringComparison.Ordinal)
                        ? new AnyValue(text[start..Pos])
                        : new Scalar(text[start..Pos], JsonValueKind.String, s, 0);
            }
            foreach (var (word, kind) in new[] { ("true", JsonValueKind.True), ("false", JsonValueKind.False), ("null", JsonValueKind.Null) })
            {
                if (string.CompareOrdinal(text, Pos, word, 0, word.Length) != 0) continue;
                Pos += word.Length;
                return new Scalar(word, kind, null, 0);
            }
            var number = NumberToken().Match(text, Pos);
            if (!number.Success) throw Error("a JSON value or ...");
            Pos += number.Length;
            return new Scalar(number.Value, JsonValueKind.Number, null, decimal.Parse(number.Value, NumberStyles.Float, CultureInfo.InvariantCulture));
        }

        private JsonPattern ObjectValue()
        {
            var start = Pos++;
            var members = new List<KeyValuePair<string, JsonPattern>>();
            var open = false;
            while (true)
            {
                SkipSpace();
                if (Pos < text.Length && text[Pos] == '}') break;
                if (AtEllipsis())
                {
                    Pos += 3;
                    open = true;
                }
                else
                {
                    if (Pos >= text.Length || text[Pos] != '"') throw Error("a member name, ... or }");
                    var name = StringValue();
                    SkipSpace();
                    if (Pos >= text.Length || text[Pos] != ':') throw Error(":");
                    Pos++;
                    members.Add(new(name, Value()));
                }
                SkipSpace();
                if (Pos < text.Length && text[Pos] == ',') Pos++;
                else if (Pos >= text.Length || text[Pos] != '}') throw Error(", or }");
            }
            Pos++;
            return new Object(text[start..Pos], members, open);
        }

        private JsonPattern ArrayValue()
        {
            var start = Pos++;
            var items = new List<JsonPattern?>();
            while (true)
            {
                SkipSpace();
                if (Pos < text.Length && text[Pos] == ']') break;
                var item = Value();
                items.Add(item is AnyValue ? null : item);
                SkipSpace();
                if (Pos < text.Length && text[Pos] == ',') Pos++;
                else if (Pos >= text.Length || text[Pos] != ']') throw Error(", or ]");
            }
            Pos++;
            return new Array(text[start..Pos], items);
        }

        public string StringValue()
        {
            Pos++;
            var s = new StringBuilder();
            while (true)
            {
                if (Pos >= text.Length) throw Error("the closing quote");
                var c = text[Pos++];
                if (c == '"') return s.ToString();
                if (c != '\\')
                {
                    s.Append(c);
                    continue;
                }
                if (Pos >= text.Length) throw Error("an escape");
                var e = text[Pos++];
                switch (e)
                {
                    case 'n': s.Append('\n'); break;
                    case 't': s.Append('\t'); break;
                    case 'r': s.Append('\r'); break;
                    case 'b': s.Append('\b'); break;
                    case 'f': s.Append('\f'); break;
                    case 'u':
                        if (Pos + 4 > text.Length) throw Error("four hex digits");
                        s.Append((char)int.Parse(text.AsSpan(Pos, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        Pos += 4;
                        break;
                    default: s.Append(e); break;
                }
            }
        }
    }
}
