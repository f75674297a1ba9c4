using System.Text.Json.Nodes;

namespace LoyaltyLedger.Tests.Api;

/// <summary>One invalid (or at least unusual) request made from a valid one.</summary>
public sealed record Mutation(string Description, SampleRequest Request, string? RawBody = null, string? ContentType = null, string? IdempotencyKey = null);

/// <summary>
/// Makes invalid requests from a valid sample, guided by the operation's schemas: a required field
/// removed, a value of the wrong JSON type, a number out of range, an unknown enum value, a NUL
/// byte, a huge string, a body that is not JSON, not an object, too large or of another media type,
/// a malformed parameter or Idempotency-Key.
/// </summary>
public static class Mutations
{
    private static readonly string Huge = new('x', 100_000);

    public static Mutation Apply(ApiDocument.Operation operation, SampleRequest sample, Random random)
    {
        var kinds = new List<Func<Mutation?>>
        {
            () => MutateParameter(operation, sample, random),
            () => new Mutation("Idempotency-Key of 201 characters", sample, IdempotencyKey: new string('k', 201)),
        };
        if (sample.Body is not null)
        {
            kinds.Add(() => MutateBody(operation, sample, random));
            kinds.Add(() => MutateBody(operation, sample, random));
            kinds.Add(() => MutateBody(operation, sample, random));
            kinds.Add(() => new Mutation("a body that is not JSON", sample, RawBody: "{\"oops\": "));
            kinds.Add(() => new Mutation("a JSON array body", sample, RawBody: "[]"));
            kinds.Add(() => new Mutation("a text/plain body", sample, RawBody: sample.Body.ToJsonString(), ContentType: "text/plain"));
            kinds.Add(() => new Mutation("a body over 1 MiB", sample, RawBody: "{\"pad\":\"" + new string('x', 1_100_000) + "\"}"));
        }
        for (var attempt = 0; attempt < 10; attempt++)
        {
            if (kinds[random.Next(kinds.Count)]() is { } mutation) return mutation;
        }
        return new Mutation("Idempotency-Key of 201 characters", sample, IdempotencyKey: new string('k', 201));
    }

    private static Mutation? MutateParameter(ApiDocument.Operation operation, SampleRequest sample, Random random)
    {
        var parameters = operation.Parameters.Where(p => p["in"]!.GetValue<string>() is "query" or "path").ToList();
        if (parameters.Count == 0) return null;
        var parameter = parameters[random.Next(parameters.Count)];
        var name = parameter["name"]!.GetValue<string>();
        var inPath = parameter["in"]!.GetValue<string>() == "path";
        // (The in-memory test server refuses a NUL in a path before the service sees it; HostileInputTests
        // sends one to the real Kestrel.)
        var bad = random.Next(inPath ? 5 : 6) switch
        {
            0 => "abc",
            1 => "1.5",
            2 => new string('9', 40),
            3 => Huge[..5000],
            4 => "NOT_A_VALUE",
            _ => "a\0b",
        };
        if (inPath)
        {
            var path = sample.Path;
            // The path's segments are known only filled in; swap the segment that holds a sample value.
            var segments = path.Split('/');
            var template = operation.Path.Split('/');
            for (var i = 0; i < template.Length && i < segments.Length; i++)
            {
                if (template[i] == "{" + name + "}") segments[i] = Uri.EscapeDataString(bad);
            }
            return new Mutation($"path {name}={Show(bad)}", sample with { Path = string.Join('/', segments) });
        }
        var query = new Dictionary<string, string>(sample.Query) { [name] = bad };
        return new Mutation($"query {name}={Show(bad)}", sample with { Query = query });
    }

    private static Mutation? MutateBody(ApiDocument.Operation operation, SampleRequest sample, Random random)
    {
        var body = sample.Body!.DeepClone();
        var schema = operation.Document.Resolve(operation.RequestSchema);
        // Pick a place in the body: the root object or one nested in it, with its schema.
        var places = new List<(JsonObject Node, JsonNode? Schema, string Path)>();
        Collect(body, schema, "$", places, operation.Document);
        if (places.Count == 0) return null;
        var (node, nodeSchema, at) = places[random.Next(places.Count)];
        var properties = nodeSchema?["properties"] as JsonObject;
        var required = (nodeSchema?["required"] as JsonArray)?.Select(r => r!.GetValue<string>()).ToList() ?? [];
        switch (random.Next(6))
        {
            case 0 when required.Count > 0:
            {
                var name = required[random.Next(required.Count)];
                node.Remove(name);
                return new Mutation($"{at}.{name} removed", sample with { Body = body });
            }
            case 1 when properties is { Count: > 0 }:
            {
                var (name, propertySchema) = properties.ElementAt(random.Next(properties.Count));
                node[name] = WrongType(operation.Document.Resolve(propertySchema), random);
                return new Mutation($"{at}.{name} of the wrong type ({Show(node[name]?.ToJsonString())})", sample with { Body = body });
            }
            case 2 when properties is { Count: > 0 }:
            {
                var (name, _) = properties.ElementAt(random.Next(properties.Count));
                JsonNode value = random.Next(4) switch
                {
                    0 => JsonValue.Create(decimal.Parse("99999999999999999999999")),
                    1 => JsonValue.Create(-1),
                    2 => JsonValue.Create("1.2345"),
                    _ => JsonValue.Create(0),
                };
                node[name] = value;
                return new Mutation($"{at}.{name} out of range ({value.ToJsonString()})", sample with { Body = body });
            }
            case 3 when properties is { Count: > 0 }:
            {
                var (name, _) = properties.ElementAt(random.Next(properties.Count));
                node[name] = "NOT_A_VALUE";
                return new Mutation($"{at}.{name} an unknown value", sample with { Body = body });
            }
            case 4:
            {
                var strings = node.Where(p => p.Value is JsonValue v && v.TryGetValue<string>(out _)).Select(p => p.Key).ToList();
                var name = strings.Count > 0 ? strings[random.Next(strings.Count)] : properties?.Select(p => p.Key).FirstOrDefault() ?? "name";
                node[name] = "nul\0byte";
                return new Mutation($"{at}.{name} with a NUL byte", sample with { Body = body });
            }
            default:
            {
                var name = properties is { Count: > 0 } ? properties.ElementAt(random.Next(properties.Count)).Key : "name";
                node[name] = Huge;
                return new Mutation($"{at}.{name} a 100,000-character string", sample with { Body = body });
            }
        }
    }

    private static void Collect(JsonNode? node, JsonNode? schema, string path, List<(JsonObject, JsonNode?, string)> places, ApiDocument document)
    {
        schema = document.Resolve(schema);
        switch (node)
        {
            case JsonObject o:
                places.Add((o, schema, path));
                foreach (var (name, child) in o.ToList())
                    Collect(child, schema?["properties"]?[name], $"{path}.{name}", places, document);
                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++) Collect(a[i], schema?["items"], $"{path}[{i}]", places, document);
                break;
        }
    }

    private static JsonNode? WrongType(JsonNode? schema, Random random)
    {
        var types = TypesOf(schema);
        var candidates = new List<JsonNode?>();
        if (!types.Contains("string")) candidates.Add(JsonValue.Create("text"));
        if (!types.Contains("number") && !types.Contains("integer")) candidates.Add(JsonValue.Create(12345));
        if (!types.Contains("integer") && types.Contains("number") is false && types.Contains("string") is false) candidates.Add(JsonValue.Create(1.5));
        if (types.Contains("integer")) candidates.Add(JsonValue.Create(1.5));
        if (!types.Contains("boolean")) candidates.Add(JsonValue.Create(true));
        if (!types.Contains("object")) candidates.Add(new JsonObject { ["a"] = 1 });
        if (!types.Contains("array")) candidates.Add(new JsonArray(1, 2));
        if (!types.Contains("null")) candidates.Add(null);
        return candidates[random.Next(candidates.Count)];
    }

    private static HashSet<string> TypesOf(JsonNode? schema) => schema?["type"] switch
    {
        JsonArray a => a.Select(t => t!.GetValue<string>()).ToHashSet(),
        JsonValue v => [v.GetValue<string>()],
        _ => schema?["enum"] is not null || schema?["$ref"] is not null ? ["string"] : [],
    };

    private static string Show(string? s) => s is null ? "null" : s.Length > 40 ? s[..40] + "..." : s.Replace("\0", "\\0");
}
