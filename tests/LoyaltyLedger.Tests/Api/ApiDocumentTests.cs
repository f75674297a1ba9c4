using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Api;
using LoyaltyLedger.Server.Demo;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Api;

/// <summary>
/// The served OpenAPI document against what the service really answers. For every operation a
/// valid request (<see cref="RequestSamples"/>) and seeded random invalid ones (wrong types, missing
/// required fields, out-of-range values, unknown enum values, NUL bytes, huge strings, bodies that
/// are not JSON or not JSON at all): every answer's status must be one the document lists for the
/// operation, with the listed content type and a body valid against the listed schema, and never a
/// 5xx. <c>LEDGER_API_SEED</c> replays a run; <c>LEDGER_API_MUTATIONS</c> sets mutations per operation.
/// </summary>
public abstract class ApiDocumentTests(DatabaseFixture db)
{
    private const string DemoKey = "api-doc-demo";
    private const string DemoSecret = "api-doc-demo-secret";

    private async Task<(Tenant Demo, ApiDocument Document)> DemoAsync()
    {
        var demo = await DemoData.EnsureAsync(db.Database, DemoKey, DemoSecret, CancellationToken.None);
        var tenant = new Tenant(demo.OrgId, new IssuedKey(demo.OrgId, DemoKey, DemoSecret, KeyRole.Admin), db.Host.Client(DemoKey, DemoSecret), db.Host);
        return (tenant, await ApiDocument.ReadAsync(db.Host.Client()));
    }

    [Fact]
    public async Task every_operation_has_a_sample_and_every_sample_an_operation()
    {
        var (demo, document) = await DemoAsync();
        document.Operations.Select(o => o.Id).ShouldBe(new RequestSamples(demo).OperationIds, ignoreOrder: true);
        document.Operations.Count.ShouldBe(document.Operations.Select(o => o.Id).Distinct().Count());
    }

    [Fact]
    public async Task a_valid_request_to_every_operation_gets_its_documented_success_and_body()
    {
        var (demo, document) = await DemoAsync();
        var samples = new RequestSamples(demo);
        var problems = new List<string>();
        foreach (var operation in document.Operations)
        {
            var sample = await samples.ForAsync(operation.Id);
            var (status, type, body) = await SendAsync(demo.Http, operation.Method, sample, idempotencyKey: null);
            if (status != operation.SuccessStatus) problems.Add($"{operation.Id}: answered {status}, documented {operation.SuccessStatus}: {body}");
            problems.AddRange(operation.Check(status, type, body).Select(p => $"{operation.Id}: {p}"));
        }
        problems.ShouldBeEmpty();
    }

    [Fact]
    public async Task a_valid_request_without_credentials_gets_401_on_every_secured_operation_and_every_operation_is_secured()
    {
        var (demo, document) = await DemoAsync();
        var samples = new RequestSamples(demo);
        var anonymous = db.Host.Client();
        var problems = new List<string>();
        foreach (var operation in document.Operations)
        {
            if (!operation.Secured) { problems.Add($"{operation.Id} lists no security requirement"); continue; }
            var (status, type, body) = await SendAsync(anonymous, operation.Method, await samples.ForAsync(operation.Id), null);
            if (status != 401) problems.Add($"{operation.Id}: answered {status} without credentials");
            problems.AddRange(operation.Check(status, type, body).Select(p => $"{operation.Id}: {p}"));
        }
        problems.ShouldBeEmpty();
        document.Root["components"]!["securitySchemes"]!["basic"]!["scheme"]!.GetValue<string>().ShouldBe("basic");
    }

    [Fact]
    public async Task invalid_requests_to_every_operation_get_only_documented_statuses_and_bodies()
    {
        var (demo, document) = await DemoAsync();
        var samples = new RequestSamples(demo);
        var seed = Environment.GetEnvironmentVariable("LEDGER_API_SEED") is { Length: > 0 } s ? int.Parse(s) : Random.Shared.Next();
        var perOperation = Environment.GetEnvironmentVariable("LEDGER_API_MUTATIONS") is { Length: > 0 } m ? int.Parse(m) : 8;
        var random = new Random(seed);
        var problems = new List<string>();
        var sent = 0;
        foreach (var operation in document.Operations)
        {
            for (var i = 0; i < perOperation; i++)
            {
                var sample = await samples.ForAsync(operation.Id);
                var mutation = Mutations.Apply(operation, sample, random);
                var (status, type, body) = await SendAsync(demo.Http, operation.Method, mutation.Request, mutation.IdempotencyKey, mutation.RawBody, mutation.ContentType);
                sent++;
                problems.AddRange(operation.Check(status, type, body).Select(p => $"{operation.Id} ({mutation.Description}): {p}"));
            }
        }
        sent.ShouldBeGreaterThan(document.Operations.Count);
        problems.ShouldBeEmpty($"seed {seed} (LEDGER_API_SEED={seed} replays it)");
    }

    [Fact]
    public async Task the_points_ledger_read_documents_every_parameter_its_parser_reads()
    {
        var (_, document) = await DemoAsync();
        var read = new HashSet<string>();
        // The mandatory three given, so that the parser goes on to ask for every other parameter.
        LoyaltyLedger.PointsLedger.LedgerQueryParser.Parse(name =>
        {
            read.Add(name);
            return name switch { "identifierName" => "id", "identifierValue" => "1", "source" => "INSTORE", _ => null };
        });
        var operation = document.Operations.Single(o => o.Id == "GetCustomerLedgerInfo");
        var documented = operation.Parameters.Where(p => p["in"]!.GetValue<string>() == "query").Select(p => p["name"]!.GetValue<string>()).ToHashSet();
        documented.ShouldBe(PointsLedgerParameters.Names.ToHashSet(), ignoreOrder: true);
        // Besides the spec's query, the one header of ours: read-your-writes from a replica.
        operation.Parameters.Where(p => p["in"]!.GetValue<string>() == "header").Select(p => p["name"]!.GetValue<string>())
            .ShouldBe(["Ledger-Consistency-Token"]);
        read.ShouldBeSubsetOf(documented);
        operation.Parameters.Where(p => p["required"]?.GetValue<bool>() == true).Select(p => p["name"]!.GetValue<string>())
            .ShouldBe(["identifierName", "identifierValue", "source"], ignoreOrder: true);
    }

    [Fact]
    public async Task every_write_documents_the_idempotency_key_and_points_are_strings_with_three_decimals()
    {
        var (_, document) = await DemoAsync();
        foreach (var operation in document.Operations.Where(o => o.Method != "GET"))
        {
            operation.Parameters.ShouldContain(p => p["name"]!.GetValue<string>() == "Idempotency-Key" && p["in"]!.GetValue<string>() == "header", operation.Id);
        }
        var schemas = document.Root["components"]!["schemas"]!;
        schemas["Points"]!["type"]!.GetValue<string>().ShouldBe("string");
        schemas["Points"]!["pattern"]!.GetValue<string>().ShouldBe(@"^-?\d+\.\d{3}$");
        // No property anywhere is left untyped ({}): every schema says what it is.
        var untyped = new List<string>();
        foreach (var (name, schema) in (JsonObject)schemas)
        {
            foreach (var (property, propertySchema) in schema!["properties"] as JsonObject ?? [])
            {
                if (propertySchema is JsonObject { Count: 0 }) untyped.Add($"{name}.{property}");
            }
        }
        untyped.ShouldBeEmpty();
    }

    internal static async Task<(int Status, MediaTypeHeaderValue? ContentType, string Body)> SendAsync(HttpClient client, string method,
        SampleRequest sample, string? idempotencyKey, string? rawBody = null, string? contentType = null)
    {
        var query = sample.Query.Count == 0 ? "" : "?" + string.Join("&", sample.Query.Select(q => $"{Uri.EscapeDataString(q.Key)}={Uri.EscapeDataString(q.Value)}"));
        using var request = new HttpRequestMessage(new HttpMethod(method), sample.Path + query);
        var body = rawBody ?? sample.Body?.ToJsonString();
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, contentType ?? "application/json");
        if (idempotencyKey is not null) request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
        using var response = await client.SendAsync(request);
        return ((int)response.StatusCode, response.Content.Headers.ContentType, await response.Content.ReadAsStringAsync());
    }
}

public sealed class ApiDocumentTestsOnSqlite(SqliteDatabase db) : ApiDocumentTests(db), IClassFixture<SqliteDatabase>;
public sealed class ApiDocumentTestsOnPostgres(PostgresDatabase db) : ApiDocumentTests(db), IClassFixture<PostgresDatabase>;
