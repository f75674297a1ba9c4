using System.Reflection;
using System.Reflection.Emit;

namespace LoyaltyLedger.Tests.Architecture;

/// <summary>
/// The arrows between the layers of LoyaltyLedger.Core point one way: the use cases and domain
/// modules use the ledger kernel (<c>Ledger</c>), the kernel uses the outbox it announces into and
/// storage, and storage uses nothing of the ledger. Read from the compiled assembly, not the source:
/// every type a layer's code names (signatures, base types, and every type, method and field its
/// method bodies use, compiler-generated lambdas and async state machines included) must come from
/// an allowed namespace; and no two or more namespaces of the core use each other in a ring. No database.
/// </summary>
public class LayeringTests
{
    private const string Root = "LoyaltyLedger";

    [Fact]
    public void the_ledger_kernel_uses_no_domain_module() =>
        Violations("LoyaltyLedger.Ledger", allowed: ["LoyaltyLedger.Ledger", "LoyaltyLedger.Outbox", "LoyaltyLedger.Storage"]).ShouldBeEmpty();

    [Fact]
    public void the_outbox_under_the_kernel_uses_only_storage() =>
        Violations("LoyaltyLedger.Outbox", allowed: ["LoyaltyLedger.Outbox", "LoyaltyLedger.Storage"]).ShouldBeEmpty();

    /// <summary>Storage may count what it does (the replicas' lag, the reads it routes) in the service's meters, and nothing else.</summary>
    [Fact]
    public void storage_uses_nothing_above_it() =>
        Violations("LoyaltyLedger.Storage", allowed: ["LoyaltyLedger.Storage", "LoyaltyLedger.Telemetry"]).ShouldBeEmpty();

    [Fact]
    public void telemetry_which_every_layer_may_count_in_uses_no_layer() =>
        Violations("LoyaltyLedger.Telemetry", allowed: ["LoyaltyLedger.Telemetry"]).ShouldBeEmpty();

    [Fact]
    public void the_root_types_shared_by_every_layer_use_no_layer() =>
        Violations(Root, allowed: []).ShouldBeEmpty();

    /// <summary>The scan must see a use made only inside a method body, or the checks above prove nothing.</summary>
    [Fact]
    public void the_scan_sees_the_use_cases_calling_the_customer_directory_inside_their_bodies() =>
        Violations("LoyaltyLedger.Postings", allowed: ["LoyaltyLedger.Postings", "LoyaltyLedger.Ledger"])
            .ShouldContain(v => v.Contains("LoyaltyLedger.Customers.CustomerDirectory", StringComparison.Ordinal));

    /// <summary>
    /// No ring between the namespaces of LoyaltyLedger.Core: if one namespace uses another, directly or
    /// through others, the other does not use it back. A ring would make the two one layer that can only
    /// be understood and changed together. The message names each ring found, with one use per arrow.
    /// </summary>
    [Fact]
    public void no_namespace_uses_another_that_uses_it_back() =>
        Rings().ShouldBeEmpty();

    /// <summary>The ring check must see a ring, or it proves nothing: two of the test assembly's namespaces form one.</summary>
    [Fact]
    public void the_ring_check_sees_a_ring_between_two_namespaces() =>
        Rings(typeof(RingSample.Left.Uses).Assembly, "LoyaltyLedger.Tests.Architecture.RingSample")
            .ShouldContain(r => r.Contains("RingSample.Left -> ", StringComparison.Ordinal) && r.Contains("RingSample.Right -> ", StringComparison.Ordinal));

    /// <summary>
    /// Each ring (strongly connected set of two or more namespaces under <paramref name="root"/>) of the
    /// namespace graph of <paramref name="assembly"/>, as one cycle through it, every arrow with the
    /// first use found behind it.
    /// </summary>
    private static List<string> Rings(Assembly? assembly = null, string root = Root)
    {
        assembly ??= typeof(Points).Assembly;
        var edges = new SortedDictionary<string, SortedDictionary<string, string>>(StringComparer.Ordinal);
        bool Inside(string? ns) => ns is not null && ns.StartsWith(root + ".", StringComparison.Ordinal);
        foreach (var type in assembly.GetTypes().Where(t => Inside(t.Namespace)))
        {
            var from = type.Namespace!;
            if (!edges.TryGetValue(from, out var targets)) edges[from] = targets = new(StringComparer.Ordinal);
            foreach (var used in Uses(type).SelectMany(Flatten))
                if (used.Assembly == assembly && Inside(used.Namespace) && used.Namespace != from)
                    targets.TryAdd(used.Namespace!, $"{type.FullName} uses {used.FullName}");
        }

        // Tarjan's strongly connected components; every component of two or more namespaces is a ring.
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var low = new Dictionary<string, int>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        var components = new List<List<string>>();
        void Visit(string node)
        {
            index[node] = low[node] = index.Count;
            stack.Push(node);
            foreach (var next in edges.GetValueOrDefault(node)?.Keys ?? Enumerable.Empty<string>())
            {
                if (!index.ContainsKey(next)) { Visit(next); low[node] = Math.Min(low[node], low[next]); }
                else if (stack.Contains(next)) low[node] = Math.Min(low[node], index[next]);
            }
            if (low[node] != index[node]) return;
            var component = new List<string>();
            string member;
            do { member = stack.Pop(); component.Add(member); } while (member != node);
            if (component.Count > 1) components.Add(component);
        }
        foreach (var node in edges.Keys) if (!index.ContainsKey(node)) Visit(node);

        var rings = new List<string>();
        foreach (var component in components)
        {
            // One cycle through the component: the shortest way back from its first member to itself.
            var members = component.ToHashSet(StringComparer.Ordinal);
            var start = component.Min(StringComparer.Ordinal)!;
            var cameFrom = new Dictionary<string, string>(StringComparer.Ordinal);
            var queue = new Queue<string>([start]);
            while (queue.Count > 0 && !cameFrom.ContainsKey(start))
            {
                var node = queue.Dequeue();
                foreach (var next in edges[node].Keys.Where(members.Contains))
                    if (cameFrom.TryAdd(next, node)) queue.Enqueue(next);
            }
            var path = new List<string> { start };
            for (var node = cameFrom[start]; node != start; node = cameFrom[node]) path.Add(node);
            path.Add(start);
            path.Reverse();
            var arrows = path.Zip(path.Skip(1), (a, b) => $"{a} -> {b} ({edges[a][b]})");
            rings.Add($"ring of {string.Join(", ", component.Order(StringComparer.Ordinal))}: {string.Join("; ", arrows)}");
        }
        return rings;
    }

    /// <summary>
    /// "type -> used type" for every type of <paramref name="layer"/> (exactly that namespace) that
    /// uses a LoyaltyLedger type outside the root namespace and <paramref name="allowed"/>.
    /// </summary>
    private static List<string> Violations(string layer, string[] allowed)
    {
        var assembly = typeof(Points).Assembly;
        var types = assembly.GetTypes().Where(t => t.Namespace == layer).ToList();
        types.ShouldNotBeEmpty($"no type in {layer}: the layer was renamed, so this test checks nothing");
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var type in types)
        foreach (var used in Uses(type).SelectMany(Flatten))
        {
            // Only the ledger's own layers count (not, say, the regex source generator's types).
            if (used.Assembly != assembly || used.Namespace is not { } ns || !ns.StartsWith(Root + ".", StringComparison.Ordinal) || allowed.Contains(ns)) continue;
            found.Add($"{type.FullName} -> {used.FullName}");
        }
        return [.. found];
    }

    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static IEnumerable<Type> Uses(Type type)
    {
        if (type.BaseType is { } baseType) yield return baseType;
        foreach (var i in type.GetInterfaces()) yield return i;
        foreach (var a in type.GetCustomAttributesData()) yield return a.AttributeType;
        foreach (var field in type.GetFields(Declared)) yield return field.FieldType;
        foreach (var property in type.GetProperties(Declared)) yield return property.PropertyType;
        foreach (var method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
        {
            if (method is MethodInfo info) yield return info.ReturnType;
            foreach (var p in method.GetParameters()) yield return p.ParameterType;
            if (method.GetMethodBody() is not { } body) continue;
            foreach (var local in body.LocalVariables) yield return local.LocalType;
            foreach (var used in BodyUses(method, body.GetILAsByteArray() ?? [])) yield return used;
        }
    }

    /// <summary>The types whose members or tokens the method's IL names (calls, fields, new objects, casts, typeof).</summary>
    private static IEnumerable<Type> BodyUses(MethodBase method, byte[] il)
    {
        var typeArgs = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        var methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (var at = 0; at < il.Length;)
        {
            var op = il[at] == 0xFE ? TwoByte[il[at + 1]] : OneByte[il[at]];
            at += op.Size;
            switch (op.OperandType)
            {
                case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok:
                    var member = method.Module.ResolveMember(BitConverter.ToInt32(il, at), typeArgs, methodArgs);
                    if (member is Type t) yield return t;
                    else if (member?.DeclaringType is { } declaring) yield return declaring;
                    if (member is MethodInfo { IsGenericMethod: true } generic)
                        foreach (var arg in generic.GetGenericArguments()) yield return arg;
                    at += 4;
                    break;
                case OperandType.InlineSwitch:
                    at += 4 + 4 * BitConverter.ToInt32(il, at);
                    break;
                default:
                    at += OperandSize(op.OperandType);
                    break;
            }
        }
    }

    private static int OperandSize(OperandType type) => type switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        _ => 4,
    };

    private static readonly OpCode[] OneByte = new OpCode[256];
    private static readonly OpCode[] TwoByte = new OpCode[256];

    static LayeringTests()
    {
        foreach (var field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var op = (OpCode)field.GetValue(null)!;
            var value = (ushort)op.Value;
            if (op.Size == 1) OneByte[value] = op;
            else TwoByte[value & 0xFF] = op;
        }
    }

    /// <summary>A type with the types it is made of: element types (arrays, refs) and generic arguments.</summary>
    private static IEnumerable<Type> Flatten(Type type)
    {
        if (type.IsGenericParameter) yield break;
        if (type.HasElementType)
        {
            foreach (var t in Flatten(type.GetElementType()!)) yield return t;
            yield break;
        }
        yield return type;
        if (type.IsGenericType && !type.IsGenericTypeDefinition)
            foreach (var t in type.GetGenericArguments().SelectMany(Flatten)) yield return t;
    }
}
