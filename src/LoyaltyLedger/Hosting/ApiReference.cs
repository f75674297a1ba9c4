using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using LoyaltyLedger.PointsLedger;
using LoyaltyLedger.Server.Api;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// Makes the OpenAPI document (<c>/openapi/v1.json</c>) say what the code does. Success statuses and
/// schemas come from the handlers' typed results (writes: <see cref="WriteAnswer"/>);
/// refusals from each endpoint's declared statuses plus those that every call of its kind can get
/// (credentials, role, rate limit, body, Idempotency-Key, a busy database); the security scheme
/// from the authorization metadata; and the schemas of types with converters of their own (strings
/// that refuse NUL, <see cref="Points"/>) from what those converters read and write.
/// </summary>
public static class ApiReference
{
    public const string DocumentName = "v1";
    private const string BasicScheme = "basic";

    /// <summary>Points as answered: always a string with three decimals.</summary>
    public const string PointsPattern = @"^-?\d+\.\d{3}$";

    /// <summary>Points as accepted: a JSON string or number with at most three decimals.</summary>
    public const string PointsInputPattern = @"^-?\d+(\.\d{1,3})?$";

    public static IServiceCollection AddLedgerApiReference(this IServiceCollection services) =>
        services.AddOpenApi(DocumentName, options =>
        {
            options.AddSchemaTransformer(DescribeConvertedTypes);
            options.AddOperationTransformer(DescribeOperationAsync);
            options.AddDocumentTransformer(DescribeDocument);
        });

    private static Task DescribeConvertedTypes(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken ct)
    {
        var type = context.JsonTypeInfo.Type;
        var converter = context.JsonPropertyInfo?.CustomConverter;
        if (converter is LedgerDateConverter or NullableLedgerDateConverter)
        {
            // The points-ledger spec's timestamps: "2024-05-04 07:16:34.0".
            schema.Type = converter is NullableLedgerDateConverter ? JsonSchemaType.String | JsonSchemaType.Null : JsonSchemaType.String;
            schema.Pattern = @"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{1,3}$";
            schema.Format = null;
        }
        else if (converter is MoneyConverter)
        {
            // Money as the vendor's JSON numbers (200.0), exact decimal text.
            schema.Type = JsonSchemaType.Number | JsonSchemaType.Null;
            schema.Pattern = null;
            schema.Format = "decimal";
        }
        else if (Nullable.GetUnderlyingType(type) == typeof(Points))
        {
            // Optional points appear only in requests: a string or a number, or null for none.
            schema.Type = JsonSchemaType.String | JsonSchemaType.Number | JsonSchemaType.Null;
            schema.Pattern = PointsInputPattern;
            schema.Format = "decimal";
        }
        else if (type == typeof(decimal) || Nullable.GetUnderlyingType(type) == typeof(decimal))
        {
            // Amounts are exact decimals (a bill's amount, the vault's values and balances): "decimal",
            // so generated clients use a decimal type, never a binary floating point.
            schema.Format = "decimal";
        }
        else if (converter is IsoTimeJsonConverter || context.JsonTypeInfo.Converter is IsoTimeJsonConverter
                 || type == typeof(DateTimeOffset) || Nullable.GetUnderlyingType(type) == typeof(DateTimeOffset))
        {
            // Instants are ISO 8601 with an offset (IsoTime), read and written as strings.
            var nullable = Nullable.GetUnderlyingType(type) is not null || context.JsonPropertyInfo is { IsGetNullable: true };
            schema.Type = nullable ? JsonSchemaType.String | JsonSchemaType.Null : JsonSchemaType.String;
            schema.Format = "date-time";
        }
        else if (type == typeof(string))
        {
            // NoNulStringConverter hides the type from the schema exporter; it reads and writes strings.
            var nullable = context.JsonPropertyInfo is { } p && (p.IsGetNullable || p.IsSetNullable);
            schema.Type = nullable ? JsonSchemaType.String | JsonSchemaType.Null : JsonSchemaType.String;
        }
        else if (type == typeof(Points))
        {
            schema.Type = JsonSchemaType.String;
            schema.Pattern = PointsPattern;
            schema.Examples = [JsonValue.Create("100.000")];
        }
        else if (context.JsonTypeInfo.Kind == System.Text.Json.Serialization.Metadata.JsonTypeInfoKind.Object && schema.Required is { Count: > 0 })
        {
            // Both serializers omit a null property (WhenWritingNull), so a property that can be null
            // may be absent: it is not required, unless it is always written.
            foreach (var property in context.JsonTypeInfo.Properties)
            {
                if (!property.IsGetNullable || IsAlwaysWritten(property)) continue;
                schema.Required.Remove(property.Name);
            }
        }
        return Task.CompletedTask;
    }

    private static bool IsAlwaysWritten(System.Text.Json.Serialization.Metadata.JsonPropertyInfo property) =>
        property.AttributeProvider?.GetCustomAttributes(typeof(JsonIgnoreAttribute), true)
            .OfType<JsonIgnoreAttribute>().Any(a => a.Condition == JsonIgnoreCondition.Never) == true;

    private static async Task DescribeOperationAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        var metadata = context.Description.ActionDescriptor.EndpointMetadata;
        var method = context.Description.HttpMethod ?? "GET";
        var anonymous = metadata.OfType<IAllowAnonymous>().Any();
        var policies = metadata.OfType<IAuthorizeData>().Select(a => a.Policy).ToHashSet();
        var authenticated = !anonymous && policies.Count > 0;
        var write = !HttpMethods.IsGet(method);
        var hasBody = context.Description.ParameterDescriptions.Any(p => p.Source.Id == "Body");
        var hasInput = hasBody || context.Description.ParameterDescriptions.Any(p => p.Source.Id is "Query" or "Path") || operation.Parameters is { Count: > 0 };
        var ledgerErrors = metadata.OfType<ErrorBodyMetadata>().LastOrDefault()?.Body == ErrorBody.PointsLedger;

        var statuses = new SortedSet<int>(metadata.OfType<RefusalMetadata>().SelectMany(r => r.Statuses));
        if (hasInput || write) statuses.Add(400);
        if (hasBody) { statuses.Add(413); statuses.Add(415); }
        if (write) statuses.Add(409); // idempotency_key_reused
        if (authenticated)
        {
            statuses.Add(401);
            statuses.Add(429);
            if (policies.Contains(CallerClaims.Write) || policies.Contains(CallerClaims.Admin)) statuses.Add(403);
            operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BasicScheme, context.Document)] = [] }];
        }
        statuses.Add(503);

        var problem = await ComponentAsync(context, typeof(ApiProblem), nameof(ApiProblem), ct);
        var ledgerError = ledgerErrors ? await ComponentAsync(context, typeof(LedgerErrorBody), nameof(LedgerErrorBody), ct) : null;
        operation.Responses ??= new OpenApiResponses();
        foreach (var status in statuses)
        {
            var key = status.ToString(System.Globalization.CultureInfo.InvariantCulture);
            // A status already described with a body (a typed result) stays; one without a body (e.g.
            // TypedResults.NotFound()) gets the error body the service really sends.
            if (operation.Responses.TryGetValue(key, out var existing) && existing.Content is { Count: > 0 }) continue;
            // 401 and 429 are answered before the endpoint runs, so the points-ledger read gets the
            // native problem body for them too (as the README says).
            var spec = ledgerError is not null && status is not (401 or 429);
            operation.Responses[key] = new OpenApiResponse
            {
                Description = Describe(status, spec),
                Content = new Dictionary<string, OpenApiMediaType>
                {
                    [spec ? "application/json" : "application/problem+json"] = new() { Schema = spec ? ledgerError : problem },
                },
            };
        }

        if (write)
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = IdempotentWriter.HeaderName,
                In = ParameterLocation.Header,
                Required = false,
                Description = "Makes the write safe to retry: a replay with the same key and body returns the first answer " +
                              "(with Idempotent-Replayed: true) and writes nothing; the same key with another body is 409 idempotency_key_reused. " +
                              "1 to 200 characters, per organization.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = 200 },
            });
            // Every successful write answers with the consistency token of its commit (PostgreSQL).
            foreach (var (code, response) in operation.Responses)
            {
                if (!code.StartsWith('2') || response is not OpenApiResponse success) continue;
                success.Headers ??= new Dictionary<string, IOpenApiHeader>();
                success.Headers[ConsistencyTokens.HeaderName] = new OpenApiHeader
                {
                    Description = ConsistencyTokens.ResponseDescription,
                    Schema = new OpenApiSchema { Type = JsonSchemaType.String, Pattern = TokenPattern },
                };
            }
        }
        if (metadata.OfType<ReplicaReadMetadata>().Any())
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = ConsistencyTokens.HeaderName,
                In = ParameterLocation.Header,
                Required = false,
                Description = ConsistencyTokens.RequestDescription,
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
            });
        }
    }

    /// <summary>A consistency token: a PostgreSQL WAL position, two hexadecimal numbers around a slash.</summary>
    private const string TokenPattern = "^[0-9A-F]{1,8}/[0-9A-F]{1,8}$";

    private static async Task<IOpenApiSchema> ComponentAsync(OpenApiOperationTransformerContext context, Type type, string name, CancellationToken ct)
    {
        var document = context.Document!;
        if (document.Components?.Schemas?.ContainsKey(name) != true)
            document.AddComponent(name, await context.GetOrCreateSchemaAsync(type, null, ct));
        return new OpenApiSchemaReference(name, document);
    }

    private static string Describe(int status, bool ledgerSpec) => status switch
    {
        400 => ledgerSpec ? "A parameter is missing, malformed or out of range (the spec's error codes)." : "The request is malformed: invalid_json, invalid_request, invalid_points, invalid_amount or invalid_cursor.",
        401 => "No or wrong credentials (unauthorized).",
        403 => "The key's role does not allow the call (forbidden), or a group member lacks the right (not_permitted).",
        404 => ledgerSpec ? "No such customer or group, or no entries for the parameters." : "A referenced resource does not exist in this organization.",
        409 => "A conflict: the Idempotency-Key was used for another request, or the resource already exists or was already posted.",
        413 => "The body is larger than 1 MiB (payload_too_large).",
        415 => "The body is not sent as application/json (unsupported_media_type).",
        422 => "The request is well formed but the ledger refuses it (e.g. insufficient_balance).",
        429 => "The key is over its rate limit (rate_limited); Retry-After says when to retry.",
        503 => "The database is busy; retry (with the same Idempotency-Key for a write).",
        _ => "Error.",
    };

    private static Task DescribeDocument(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken ct)
    {
        document.Info = new OpenApiInfo
        {
            Title = "LoyaltyLedger",
            Version = "1.0.0",
            Description = "A loyalty points ledger: the native API (/v1), the points-ledger read (/v2/pointsLedger/getCustomerLedgerInfo) " +
                          "and the loyalty-vault API (/api/v1.0/LoyaltyVault). Every call authenticates with HTTP Basic: an API key id and its secret. " +
                          "Points are exact to three decimals: answered as strings (\"100.000\"), accepted as strings or numbers.",
            License = new OpenApiLicense { Name = "MIT", Identifier = "MIT" },
        };
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[BasicScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "basic",
            Description = "An API key id as the user name and its secret as the password.",
        };
        // A server URL without a trailing slash, so that clients append paths that start with one.
        foreach (var server in document.Servers ?? []) server.Url = server.Url?.TrimEnd('/');
        document.Tags = new HashSet<OpenApiTag>(Tags.Select(t => new OpenApiTag { Name = t.Name, Description = t.Description }));
        AcceptPointsAsNumbersInRequests(document);
        return Task.CompletedTask;
    }

    private static readonly (string Name, string Description)[] Tags =
    [
        ("Points ledger", "The points-ledger read, wire-compatible with the points-ledger spec (GET /v2/pointsLedger/getCustomerLedgerInfo)."),
        ("LoyaltyVault", "The loyalty-vault API: an account's history, balances and vouchers per program, paid baskets and transfers."),
        ("Programs", "Programs (loyalty point definitions) with their earn rules, expiry and alternate currencies."),
        ("Stores", "Stores and their tills; bills are unique by number within a store."),
        ("Customers", "Customers: registration, identifiers per source, loyalty account numbers (cards), balances."),
        ("Groups", "User groups: a primary member, members with roles and rights, and a pooled wallet."),
        ("Postings", "The postings that move points: bills, redemptions, bulk allocations, named events, transfers."),
        ("Lifecycle", "Returns, reversals, held points, the expiry run, and the schedule and as-of reads."),
        ("Exports", "The organization's ledger, one row per ledger line, streamed as CSV or NDJSON."),
        ("Keys", "The organization's API keys: issue, list, rotate, revoke (admin keys)."),
        ("Vouchers", "Voucher definitions: what a program's points buy through the loyalty-vault API."),
    ];

    /// <summary>
    /// Requests accept points as a string or a number; answers always write a string with three
    /// decimals. The request types (and only they) refer to <c>PointsInput</c> instead of <c>Points</c>.
    /// </summary>
    private static void AcceptPointsAsNumbersInRequests(OpenApiDocument document)
    {
        var schemas = document.Components?.Schemas;
        if (schemas is null || !schemas.ContainsKey(nameof(Points))) return;
        var requestSchemas = new HashSet<string>();
        foreach (var operation in document.Paths.Values.SelectMany(p => p.Operations?.Values ?? Enumerable.Empty<OpenApiOperation>()))
        {
            foreach (var media in operation.RequestBody?.Content?.Values ?? Enumerable.Empty<OpenApiMediaType>())
                CollectReferences(media.Schema, schemas, requestSchemas);
        }
        schemas["PointsInput"] = new OpenApiSchema
        {
            Type = JsonSchemaType.String | JsonSchemaType.Number,
            Pattern = PointsInputPattern,
            // "decimal": a generated client holds points exactly (C#: decimal), never as a double.
            Format = "decimal",
            Description = "A quantity of points with at most three decimals, as a JSON string (\"12.5\") or number (12.5).",
            Examples = [JsonValue.Create("100")],
        };
        foreach (var name in requestSchemas)
        {
            if (schemas[name] is OpenApiSchema schema) RetargetPoints(schema, document);
        }
    }

    private static void CollectReferences(IOpenApiSchema? schema, IDictionary<string, IOpenApiSchema> schemas, HashSet<string> found)
    {
        switch (schema)
        {
            case null:
                return;
            case OpenApiSchemaReference reference:
                var id = reference.Reference.Id;
                if (id is not null && found.Add(id) && schemas.TryGetValue(id, out var target)) CollectReferences(target, schemas, found);
                return;
            case OpenApiSchema inline:
                foreach (var child in Children(inline)) CollectReferences(child, schemas, found);
                return;
        }
    }

    private static IEnumerable<IOpenApiSchema> Children(OpenApiSchema schema)
    {
        foreach (var p in schema.Properties?.Values ?? Enumerable.Empty<IOpenApiSchema>()) yield return p;
        if (schema.Items is not null) yield return schema.Items;
        if (schema.AdditionalProperties is not null) yield return schema.AdditionalProperties;
        foreach (var s in schema.OneOf ?? []) yield return s;
        foreach (var s in schema.AnyOf ?? []) yield return s;
        foreach (var s in schema.AllOf ?? []) yield return s;
    }

    private static void RetargetPoints(OpenApiSchema schema, OpenApiDocument document)
    {
        if (schema.Properties is { } properties)
        {
            foreach (var name in properties.Keys.ToList())
            {
                if (IsPoints(properties[name])) properties[name] = new OpenApiSchemaReference("PointsInput", document);
                else if (properties[name] is OpenApiSchema inline) RetargetPoints(inline, document);
            }
        }
        if (schema.Items is not null && IsPoints(schema.Items)) schema.Items = new OpenApiSchemaReference("PointsInput", document);
        foreach (var list in new[] { schema.OneOf, schema.AnyOf })
        {
            if (list is null) continue;
            for (var i = 0; i < list.Count; i++)
            {
                if (IsPoints(list[i])) list[i] = new OpenApiSchemaReference("PointsInput", document);
            }
        }
    }

    private static bool IsPoints(IOpenApiSchema schema) => schema is OpenApiSchemaReference { Reference.Id: nameof(Points) };
}
