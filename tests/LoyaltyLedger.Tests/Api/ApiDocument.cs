using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace LoyaltyLedger.Tests.Api;

/// <summary>
/// The served OpenAPI document, read as a test would read any client's contract: its operations,
/// the statuses each lists, and a JSON Schema validator for each listed body.
/// </summary>
public sealed class ApiDocument
{
    private readonly JsonObject _defs;
    private readonly Dictionary<string, JsonSchema> _compiled = [];

    public ApiDocument(JsonObject document)
    {
        Root = document;
        // OpenAPI 3.1 schemas are JSON Schema 2020-12; their references point into the document's
        // components, which become $defs of every schema validated here.
        _defs = (JsonObject)Rewrite(document["components"]?["schemas"] ?? new JsonObject());
        Operations = [];
        foreach (var (path, item) in (JsonObject)document["paths"]!)
        {
            foreach (var (method, operation) in (JsonObject)item!)
            {
                Operations.Add(new Operation(path, method.ToUpperInvariant(), (JsonObject)operation!, this));
            }
        }
    }

    public JsonObject Root { get; }
    public List<Operation> Operations { get; }

    public static async Task<ApiDocument> ReadAsync(HttpClient anonymous)
    {
        var text = await anonymous.GetStringAsync("/openapi/v1.json");
        return new ApiDocument((JsonObject)JsonNode.Parse(text)!);
    }

    public JsonNode? Resolve(JsonNode? schema)
    {
        while (schema?["$ref"]?.GetValue<string>() is { } reference)
            schema = Root["components"]!["schemas"]![reference["#/components/schemas/".Length..]];
        return schema;
    }

    /// <summary>The schema's errors for <paramref name="body"/>, or none.</summary>
    public IReadOnlyList<string> Validate(JsonNode schema, JsonElement body)
    {
        var key = schema.ToJsonString();
        if (!_compiled.TryGetValue(key, out var compiled))
        {
            var root = new JsonObject
            {
                ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
                ["$defs"] = _defs.DeepClone(),
                ["allOf"] = new JsonArray(Rewrite(schema)),
            };
            compiled = JsonSchema.FromText(root.ToJsonString(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
            _compiled[key] = compiled;
        }
        var result = compiled.Evaluate(body, new EvaluationOptions { OutputFormat = OutputFormat.List });
        if (result.IsValid) return [];
        return (result.Details ?? [])
            .Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key} {e.Value}"))
            .DefaultIfEmpty("invalid")
            .ToList();
    }

    private static JsonNode Rewrite(JsonNode node)
    {
        var copy = node.DeepClone();
        Walk(copy);
        return copy;

        static void Walk(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    if (o["$ref"]?.GetValue<string>() is { } r && r.StartsWith("#/components/schemas/", StringComparison.Ordinal))
                        o["$ref"] = "#/$defs/" + r["#/components/schemas/".Length..];
                    foreach (var (_, child) in o.ToList()) Walk(child);
                    break;
                case JsonArray a:
                    foreach (var child in a) Walk(child);
                    break;
            }
        }
    }

    public sealed record Operation(string Path, string Method, JsonObject Node, ApiDocument Document)
    {
        public string Id => Node["operationId"]!.GetValue<string>();
        public bool Secured => Node["security"] is JsonArray { Count: > 0 };
        public IEnumerable<string> Statuses => ((JsonObject)Node["responses"]!).Select(r => r.Key);
        public int SuccessStatus => Statuses.Select(int.Parse).Single(s => s is >= 200 and < 300);

        public IEnumerable<JsonObject> Parameters => (Node["parameters"] as JsonArray ?? []).Select(p => (JsonObject)Document.Resolve(p)!);

        public JsonNode? RequestSchema => Node["requestBody"]?["content"]?["application/json"]?["schema"];

        /// <summary>Every way the answer disagrees with the document; empty when it agrees.</summary>
        public IReadOnlyList<string> Check(int status, MediaTypeHeaderValue? contentType, string body)
        {
            var problems = new List<string>();
            var response = Node["responses"]?[status.ToString(System.Globalization.CultureInfo.InvariantCulture)];
            if (status >= 500) problems.Add($"answered {status}");
            if (response is null)
            {
                problems.Add($"status {status} is not listed (listed: {string.Join(", ", Statuses)})");
                return problems;
            }
            var content = response["content"] as JsonObject;
            if (content is null || content.Count == 0)
            {
                if (body.Length > 0) problems.Add($"status {status} lists no body, but one came: {Cut(body)}");
                return problems;
            }
            var media = contentType?.MediaType;
            if (media is null || !content.ContainsKey(media))
            {
                problems.Add($"content type {media ?? "(none)"} is not listed for {status} (listed: {string.Join(", ", content.Select(c => c.Key))})");
                return problems;
            }
            if (!IsJson(media))
            {
                problems.AddRange(CheckText(status, media, body));
                return problems;
            }
            JsonElement parsed;
            try
            {
                parsed = JsonDocument.Parse(body).RootElement.Clone();
            }
            catch (JsonException)
            {
                problems.Add($"status {status} body is not JSON: {Cut(body)}");
                return problems;
            }
            if (content[media]?["schema"] is { } schema)
            {
                foreach (var error in Document.Validate(schema, parsed)) problems.Add($"status {status} body: {error} in {Cut(body)}");
            }
            return problems;
        }

        /// <summary>application/json, application/problem+json and other +json types; the exports' CSV and NDJSON are not.</summary>
        private static bool IsJson(string media) => media == "application/json" || media.EndsWith("+json", StringComparison.Ordinal);

        /// <summary>
        /// A body that is not one JSON value, checked for what its type promises: CSV is RFC 4180
        /// with a header and every record as wide as it; NDJSON is one JSON object per line, each
        /// line ended by a newline.
        /// </summary>
        private static IEnumerable<string> CheckText(int status, string media, string body)
        {
            switch (media)
            {
                case "text/csv":
                    string? error = null;
                    try
                    {
                        using var reader = CsvHelper.CsvReader.Create(System.Text.Encoding.UTF8.GetBytes(body), CsvHelper.CsvReaderOptions.Default with
                        {
                            Separator = ',',
                            FieldCountMismatch = CsvHelper.CsvFieldCountHandling.Throw,
                        });
                        if (reader.Headers.Count == 0) error = "has no header row";
                        while (reader.Read()) { }
                    }
                    catch (Exception e) when (e is CsvHelper.CsvFormatException or FormatException)
                    {
                        error = e.Message;
                    }
                    if (error is not null) yield return $"status {status} body is not CSV ({error}): {Cut(body)}";
                    break;
                case "application/x-ndjson":
                    if (body.Length > 0 && !body.EndsWith('\n')) yield return $"status {status} NDJSON body does not end with a newline: {Cut(body)}";
                    foreach (var line in body.TrimEnd('\n').Split('\n').Where(_ => body.Length > 0))
                    {
                        JsonValueKind kind;
                        try { using var document = JsonDocument.Parse(line); kind = document.RootElement.ValueKind; }
                        catch (JsonException) { kind = JsonValueKind.Undefined; }
                        if (kind != JsonValueKind.Object) yield return $"status {status} NDJSON line is not a JSON object: {Cut(line)}";
                    }
                    break;
                default:
                    yield return $"status {status} lists {media}, which this check cannot read";
                    break;
            }
        }

        private static string Cut(string s) => s.Length > 400 ? s[..400] + "..." : s;
    }
}
