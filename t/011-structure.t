# The structure of the module's sources, as issue 17 ("each fact in one
# place") left it, held by mechanical checks:
#
#   - the calls between the object files (nm) go one way: no cycle, the
#     module variable ngx_http_acs_notify_module aside;
#   - docs/architecture.md lists exactly those calls ("How the files depend
#     on each other");
#   - the built module leaves no symbol of its own undefined;
#   - no C file of the module is over 1,200 lines;
#   - the platforms' names are typed in ngx_acs_platform.c only: no other C
#     file of the repository has a string that is one, or lists two;
#   - the statuses 429, 503 and 410 of the hubs are read in ngx_acs_hub.c
#     only;
#   - no "default:" stands for a named intent or platform;
#   - the low files (the helpers, and those the features build on) do not
#     include the module's configuration header.
#
# Needs the objects of ./build.sh build (ACS_NGINX_TREE: another tree).

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use AcsTest::Util qw(slurp);
use AcsTest::Tree;

my $M = 'ngx_acs_notify_module';
my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
my $objs = "$tree->{path}/objs/addon/$M";
my $so = $ENV{TEST_NGINX_LOAD_MODULES} || 'objs/ngx_http_acs_notify_module.so';


# the objects of the sources the addon script builds (an object left from
# a file since renamed does not count)
my ($srcs) = slurp('config') =~ /ngx_module_srcs="([^"]*)"/;
my @o = map { m{/(ngx_acs_\w+)\.c} ? "$objs/$1.o" : () } split /\s+/, $srcs // '';
ok(@o > 20 && !grep({ !-f } @o), "the module's objects are in $objs")
    or BAIL_OUT('run ./build.sh build first');
sub name { $_[0] =~ m{ngx_acs_(\w+)\.[cho]$} ? $1 : $_[0] }

# the C text without comments, strings kept (for the literal checks) or
# blanked (for the code checks)
sub code {
    my ($text, $keep_strings) = @_;
    my $out = '';
    while ($text =~ m{\G(?:(/\*.*?\*/)|(//[^\n]*)|("(?:[^"\\\n]|\\.)*")|('(?:[^'\\\n]|\\.)*')|(.))}gsc) {
        if (defined $1 || defined $2) { $out .= ' ' }
        elsif (defined $3) { $out .= $keep_strings ? $3 : '""' }
        elsif (defined $4) { $out .= $4 }
        else { $out .= $5 }
    }
    return $out;
}

# --- calls by nm

my (%def, %und);
for my $o (@o) {
    for (`nm $o`) {
        if (/^\s+U (\S+)/) { $und{name($o)}{$1} = 1 }
        elsif (/^[0-9a-f]+ [TDBRC] (\S+)/) { $def{$1} = name($o) }
    }
}

my %calls;
for my $f (map { name($_) } @o) {
    $calls{$f} //= {};
    for my $s (keys %{ $und{$f} || {} }) {
        my $to = $def{$s} or next;
        next if $to eq $f || $s eq 'ngx_http_acs_notify_module';
        $calls{$f}{$to} = 1;
    }
}

my (%state, @cycles);
sub visit {
    my ($f, @path) = @_;
    $state{$f} = 1;
    for my $to (sort keys %{ $calls{$f} }) {
        if (($state{$to} // 0) == 1) { push @cycles, join(' -> ', @path, $f, $to) }
        elsif (!$state{$to}) { visit($to, @path, $f) }
    }
    $state{$f} = 2;
}
visit($_) for sort keys %calls;
is_deeply(\@cycles, [], 'no call cycle between the files (nm)') or diag join "\n", @cycles;

my @undef = grep { /^ngx_(acs|http_acs)_/ } map { /^\s+U (\S+)/ ? $1 : () } `nm -u $so`;
is_deeply(\@undef, [], "$so leaves none of its own symbols undefined");

# --- docs/architecture.md says the same

my $doc = slurp('docs/architecture.md');
my ($block) = $doc =~ /## How the files depend on each other.*?```\n(.*?)```/s;
ok($block, 'docs/architecture.md has the graph of the files');
my (%said, %none, $list);
for my $line (split /\n/, $block // '') {
    if ($line =~ /^\s*calling none of the others:\s*(.*)$/) {
        $list = \%none;
        $none{$_} = 1 for grep { length } split /[,\s]+/, $1;
    } elsif ($line =~ /^\s*(\w+)\s+[─-]*▶\s*(.*)$/) {
        $list = $said{$1} = {};
        $list->{$_} = 1 for grep { length } split /[,\s]+/, $2;
    } elsif ($list && $line =~ /^\s+([\w, ]+)$/) {
        $list->{$_} = 1 for grep { length } split /[,\s]+/, $1;
    }
}
for my $f (sort keys %calls) {
    if (%{ $calls{$f} }) {
        is(join(', ', sort keys %{ $said{$f} || {} }), join(', ', sort keys %{ $calls{$f} }),
           "docs/architecture.md: what $f calls");
    } else {
        ok($none{$f} && !$said{$f}, "docs/architecture.md: $f calls none of the others");
    }
}
is_deeply([grep { !$calls{$_} } sort(keys %said, keys %none)], [],
          'docs/architecture.md names no file that is not built');

# --- sizes, literals, statuses, defaults, includes

my @c = glob "$M/*.c";
my @h = glob "$M/*.h";
for my $f (@c) {
    my $n = () = slurp($f) =~ /\n/g;
    ok($n <= 1200, "$f: $n lines, at most 1,200");
}

my @names = slurp("$M/ngx_acs_platform.c") =~ /\.name = ngx_string\("([^"]+)"\)/g;
ok(@names >= 5, 'the platforms of the table: ' . join(', ', @names));
my $name = join '|', map { quotemeta } @names;

my @all_c = (@c, @h, glob('t/unit/*.c'), glob('bench/lib/*.c'));
my @typed;
for my $f (grep { !/ngx_acs_platform\.c$/ } @all_c) {
    for my $s (code(slurp($f), 1) =~ /"((?:[^"\\\n]|\\.)*)"/g) {
        my $n = () = $s =~ /(?<![\w-])(?:$name)(?![\w-])/g;
        push @typed, "$f: \"$s\"" if $s =~ /^(?:$name)$/ || $n >= 2;
    }
}
is_deeply(\@typed, [], 'platform names are typed in ngx_acs_platform.c only');

my @statuses;
for my $f (grep { !/ngx_acs_hub\.c$/ } @c, @h) {
    my $code = code(slurp($f), 0);
    push @statuses, "$f: $1" while $code =~ /(?<![\w.])(429|503|410)(?![\w.])/g;
}
is_deeply(\@statuses, [], 'the statuses 429, 503 and 410 are read in ngx_acs_hub.c only');

my @defaults;
for my $f (@c) {
    push @defaults, "$f: $1" while slurp($f) =~ m{(default:\s*/\*\s*NGX_ACS_(?:INTENT|PLATFORM)_\w+)}g;
}
is_deeply(\@defaults, [], 'no default: stands for an intent or a platform');

for my $low (qw(conf http json crypto registry hub jwks auth)) {
    unlike(slurp("$M/ngx_acs_$low.c"), qr/#include "ngx_acs_notify\.h"/,
           "ngx_acs_$low.c does not include the module's configuration header");
}

done_testing;
