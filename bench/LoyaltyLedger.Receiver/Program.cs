using System.Diagnostics;

// A webhook receiver for bench/webhooks.sh: Kestrel on 127.0.0.1, answers every POST with 204 at
// once and counts; GET /stats tells how many arrived, how many distinct webhook-ids, and when the
// first and the last came (seconds since it started); DELETE /stats starts the count afresh.
//   LoyaltyLedger.Receiver --urls http://127.0.0.1:PORT
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
var app = builder.Build();
var clock = Stopwatch.StartNew();
var ids = new HashSet<string>();
long count = 0;
double first = -1, last = -1;
var gate = new object();

app.MapPost("/{**path}", (HttpRequest request) =>
{
    var id = request.Headers["webhook-id"].ToString();
    lock (gate)
    {
        count++;
        ids.Add(id);
        var now = clock.Elapsed.TotalSeconds;
        if (first < 0) first = now;
        last = now;
    }
    return Results.NoContent();
});
app.MapGet("/stats", () =>
{
    lock (gate) return Results.Json(new { count, distinct = ids.Count, first, last, now = clock.Elapsed.TotalSeconds });
});
app.MapDelete("/stats", () =>
{
    lock (gate)
    {
        (count, first, last) = (0, -1, -1);
        ids.Clear();
    }
    return Results.NoContent();
});
app.Run();
