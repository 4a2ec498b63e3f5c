package AcsTest::Entra;

# Test helper: throw-away signing keys, JWKS files and Microsoft Entra ID
# style bearer tokens (as sent by Azure Event Grid to a secured webhook).
#
# Everything is generated locally with the openssl CLI; no real credential
# is ever used.  Only core Perl modules are needed.
#
#   my $k   = AcsTest::Entra::setup($dir);        # keys + JWKS files in $dir
#   my $jwt = AcsTest::Entra::token();            # valid v1.0 RS256 token
#   my $bad = AcsTest::Entra::token(tamper => 'signature');
#
# See the POD at the end of this file for all options.

use strict;
use AcsTest::Defaults;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA qw(hmac_sha256);
use Fcntl qw(:flock);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempdir tempfile);
use IPC::Open3 qw(open3);
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use Symbol qw(gensym);

our $VERSION = '0.01';

our $TENANT   = '72f988bf-86f1-41af-91ab-2d7cd011db47';
our $AUDIENCE = 'api://acs-notify-test';
our $EVENTGRID_APPID = '4962773b-9cdb-44cf-a8bf-237846a00ab7';
# Object id of the (fictitious) Event Grid service principal in the tenant.
our $SP_OID   = '5e0a1d7c-3b52-4f7a-9c1e-2d8a6b4f0e13';

our %KID = (
    key1 => 'test-kid-1',
    key2 => 'test-kid-2',
    ec   => 'test-kid-ec',
);

our $OPENSSL = $ENV{OPENSSL} || 'openssl';

my $LAST_DIR;
my %SETUP_DONE;
my $JSON = JSON::PP->new->canonical(1);

# ---------------------------------------------------------------------------
# base64url

sub b64url {
    my ($bytes) = @_;
    $bytes = '' unless defined $bytes;
    my $s = encode_base64($bytes, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+\z//;
    return $s;
}

sub b64url_decode {
    my ($s) = @_;
    $s = '' unless defined $s;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    return decode_base64($s);
}

# ---------------------------------------------------------------------------
# running openssl

# _run(\@cmd, %o) -> stdout.  Croaks with stderr on non-zero exit.
# o: in_file => path used as stdin (default /dev/null).
sub _run {
    my ($cmd, %o) = @_;
    my $in_path = defined $o{in_file} ? $o{in_file} : File::Spec->devnull;
    open(my $in, '<', $in_path) or croak "open $in_path: $!";
    my $err = gensym;
    my $pid = open3('<&' . fileno($in), my $out, $err, @$cmd);
    close $in;
    binmode $out;
    # Outputs are small (a modulus, a DER key); read stdout then stderr.
    my $stdout = do { local $/; <$out> };
    my $stderr = do { local $/; <$err> };
    waitpid($pid, 0);
    my $rc = $? >> 8;
    if ($? != 0) {
        croak "command failed (exit $rc): @$cmd\n"
            . (defined $stderr ? $stderr : '');
    }
    return defined $stdout ? $stdout : '';
}

sub _slurp {
    my ($path) = @_;
    open(my $fh, '<:raw', $path) or croak "read $path: $!";
    local $/;
    my $d = <$fh>;
    return defined $d ? $d : '';
}

sub _spew {
    my ($path, $data) = @_;
    open(my $fh, '>:raw', $path) or croak "write $path: $!";
    print {$fh} $data or croak "write $path: $!";
    close($fh) or croak "close $path: $!";
}

# ---------------------------------------------------------------------------
# key material

sub _hex_to_bytes {
    my ($hex) = @_;
    $hex =~ s/\s+//g;
    $hex = "0$hex" if length($hex) % 2;
    return pack('H*', $hex);
}

# Returns (n_bytes, e_bytes) of an RSA public key PEM; n has no leading 0.
sub rsa_public_numbers {
    my ($pub_pem_path) = @_;
    my $mod = _run([$OPENSSL, 'rsa', '-pubin', '-in', $pub_pem_path,
                    '-modulus', '-noout']);
    $mod =~ /Modulus=([0-9A-Fa-f]+)/ or croak "no modulus in: $mod";
    my $n = _hex_to_bytes($1);
    $n =~ s/\A\x00+//;

    my $text = _run([$OPENSSL, 'rsa', '-pubin', '-in', $pub_pem_path,
                     '-text', '-noout']);
    $text =~ /Exponent:\s*(\d+)/ or croak "no exponent in: $text";
    my $e_int = $1;
    my $e = '';
    while ($e_int > 0) {
        $e = chr($e_int & 0xff) . $e;
        $e_int >>= 8;
    }
    return ($n, $e);
}

# Returns (x_bytes, y_bytes) of a P-256 key (private or public PEM).
sub ec_public_numbers {
    my ($pem_path, $is_public) = @_;
    my $der = _run([$OPENSSL, 'pkey', ($is_public ? '-pubin' : ()),
                    '-in', $pem_path, '-pubout', '-outform', 'DER']);
    # SubjectPublicKeyInfo for P-256 ends with the uncompressed point
    # 0x04 || X(32) || Y(32).
    my $pt = substr($der, -65);
    croak "unexpected EC public key encoding"
        unless length($pt) == 65 && substr($pt, 0, 1) eq "\x04";
    return (substr($pt, 1, 32), substr($pt, 33, 32));
}

sub _rsa_jwk {
    my ($pub, $kid) = @_;
    my ($n, $e) = rsa_public_numbers($pub);
    return {
        kty => 'RSA',
        use => 'sig',
        kid => $kid,
        x5t => $kid,
        n   => b64url($n),
        e   => b64url($e),
    };
}

sub _write_jwks {
    my ($path, @keys) = @_;
    _spew($path, JSON::PP->new->canonical(1)->pretty->encode({ keys => [@keys] }));
}

sub _paths {
    my ($dir) = @_;
    my %p = (
        dir           => $dir,
        key1          => "$dir/key1.pem",
        key1_pub      => "$dir/key1.pub.pem",
        key2          => "$dir/key2.pem",
        key2_pub      => "$dir/key2.pub.pem",
        ec            => "$dir/ec.pem",
        ec_pub        => "$dir/ec.pub.pem",
        jwks          => "$dir/jwks.json",
        jwks_key1only => "$dir/jwks-key1only.json",
        jwks_empty    => "$dir/jwks-empty.json",
        jwks_ec       => "$dir/jwks-ec.json",
        hs256_secret  => "$dir/hs256-secret.pem",
        tenant        => $TENANT,
        audience      => $AUDIENCE,
    );
    return \%p;
}

my @FILES = qw(key1.pem key1.pub.pem key2.pem key2.pub.pem ec.pem ec.pub.pem
               jwks.json jwks-key1only.json jwks-empty.json jwks-ec.json
               hs256-secret.pem);

sub _generate {
    my ($tmp) = @_;

    for my $k (qw(key1 key2)) {
        _run([$OPENSSL, 'genpkey', '-algorithm', 'RSA',
              '-pkeyopt', 'rsa_keygen_bits:2048', '-out', "$tmp/$k.pem"]);
        _run([$OPENSSL, 'pkey', '-in', "$tmp/$k.pem", '-pubout',
              '-out', "$tmp/$k.pub.pem"]);
    }
    _run([$OPENSSL, 'genpkey', '-algorithm', 'EC',
          '-pkeyopt', 'ec_paramgen_curve:P-256',
          '-pkeyopt', 'ec_param_enc:named_curve', '-out', "$tmp/ec.pem"]);
    _run([$OPENSSL, 'pkey', '-in', "$tmp/ec.pem", '-pubout',
          '-out', "$tmp/ec.pub.pem"]);

    my $j1 = _rsa_jwk("$tmp/key1.pub.pem", $KID{key1});
    my $j2 = _rsa_jwk("$tmp/key2.pub.pem", $KID{key2});
    my ($x, $y) = ec_public_numbers("$tmp/ec.pem");
    my $jec = {
        kty => 'EC',
        use => 'sig',
        kid => $KID{ec},
        crv => 'P-256',
        x   => b64url($x),
        y   => b64url($y),
    };

    _write_jwks("$tmp/jwks.json", $j1, $j2);
    _write_jwks("$tmp/jwks-key1only.json", $j1);
    _write_jwks("$tmp/jwks-empty.json");
    _write_jwks("$tmp/jwks-ec.json", $jec);
    _spew("$tmp/hs256-secret.pem", _slurp("$tmp/key1.pub.pem"));
}

# setup($dir): create (once) the keys and JWKS files in $dir.  Safe to call
# concurrently from several processes: generation happens under an
# exclusive flock, into a private temp dir, and the files are renamed into
# place before the completion marker is written.
sub setup {
    my ($dir) = @_;
    croak "setup: directory required" unless defined $dir && length $dir;
    make_path($dir);
    $dir = abs_path($dir);
    $LAST_DIR = $dir;
    return _paths($dir) if $SETUP_DONE{$dir};

    my $marker = "$dir/.entra-complete";
    unless (-e $marker) {
        my $lockf = "$dir/.entra.lock";
        open(my $lock, '>>', $lockf) or croak "open $lockf: $!";
        flock($lock, LOCK_EX) or croak "flock $lockf: $!";
        unless (-e $marker) {
            my $tmp = tempdir('.entra-tmp-XXXXXX', DIR => $dir, CLEANUP => 0);
            my $ok = eval { _generate($tmp); 1 };
            my $err = $@;
            if ($ok) {
                for my $f (@FILES) {
                    rename("$tmp/$f", "$dir/$f")
                        or do { $err = "rename $f: $!"; $ok = 0; last };
                }
            }
            remove_tree($tmp);
            croak "AcsTest::Entra::setup($dir) failed: $err" unless $ok;
            _spew($marker, "ok\n");
        }
        close($lock);
    }
    $SETUP_DONE{$dir} = 1;
    return _paths($dir);
}

# ---------------------------------------------------------------------------
# signing

sub _sign_openssl {
    my ($key_pem, $digest, $data, @sigopt) = @_;
    my ($fh, $in) = tempfile('entra-in-XXXXXX', TMPDIR => 1, UNLINK => 1);
    binmode $fh;
    print {$fh} $data;
    close $fh;
    my (undef, $out) = tempfile('entra-sig-XXXXXX', TMPDIR => 1, UNLINK => 1);
    _run([$OPENSSL, 'dgst', "-$digest", '-sign', $key_pem,
          (map { ('-sigopt', $_) } @sigopt), '-out', $out, $in]);
    my $sig = _slurp($out);
    unlink $in, $out;
    return $sig;
}

# DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER } -> r || s, each
# left-padded to $len bytes (32 for P-256).
sub ecdsa_der_to_raw {
    my ($der, $len) = @_;
    $len ||= 32;
    my $pos = 0;
    my $read_len = sub {
        my $l = ord(substr($der, $pos++, 1));
        if ($l & 0x80) {
            my $nb = $l & 0x7f;
            $l = 0;
            $l = ($l << 8) | ord(substr($der, $pos++, 1)) for 1 .. $nb;
        }
        return $l;
    };
    croak "ECDSA sig: not a SEQUENCE" unless substr($der, $pos++, 1) eq "\x30";
    $read_len->();
    my @ints;
    for (1 .. 2) {
        croak "ECDSA sig: not an INTEGER" unless substr($der, $pos++, 1) eq "\x02";
        my $l = $read_len->();
        my $v = substr($der, $pos, $l);
        $pos += $l;
        $v =~ s/\A\x00+//;
        croak "ECDSA sig: integer too long" if length($v) > $len;
        push @ints, ("\x00" x ($len - length $v)) . $v;
    }
    return join('', @ints);
}

# Inverse of ecdsa_der_to_raw (useful for verifying with openssl).
sub ecdsa_raw_to_der {
    my ($raw) = @_;
    my $half = length($raw) / 2;
    my $enc_int = sub {
        my $v = shift;
        $v =~ s/\A\x00+//;
        $v = "\x00" if $v eq '';
        $v = "\x00$v" if ord($v) & 0x80;
        return "\x02" . chr(length $v) . $v;
    };
    my $body = $enc_int->(substr($raw, 0, $half))
             . $enc_int->(substr($raw, $half));
    return "\x30" . chr(length $body) . $body;
}

# ---------------------------------------------------------------------------
# tokens

sub default_claims {
    my (%o) = @_;
    my $now = defined $o{now} ? $o{now} : time;
    my $v2  = defined $o{version} && $o{version} eq '2.0';
    my %c = (
        aud => $AUDIENCE,
        iat => $now - 60,
        nbf => $now - 60,
        exp => $now + 3600,
        idp => "https://sts.windows.net/$TENANT/",
        oid => $SP_OID,
        sub => $SP_OID,
        tid => $TENANT,
        # Opaque claims seen in real Event Grid tokens (values made up).
        aio => 'E2NgYJh0dGVzdC1ub3QtcmVhbC1haW8+/AA==',
        rh  => '0.AAAAtestOnlyNotARealRefreshHint0000000000.',
        uti => 'dGVzdC11dGktMDAwMQ',
    );
    if ($v2) {
        $c{iss}    = "https://login.microsoftonline.com/$TENANT/v2.0";
        $c{azp}    = $EVENTGRID_APPID;
        $c{azpacr} = '2';
        $c{ver}    = '2.0';
    } else {
        $c{iss}      = "https://sts.windows.net/$TENANT/";
        $c{appid}    = $EVENTGRID_APPID;
        $c{appidacr} = '2';
        $c{ver}      = '1.0';
    }
    return \%c;
}

sub _merge {
    my ($base, $over) = @_;
    return $base unless $over;
    croak "expected a hashref" unless ref $over eq 'HASH';
    for my $k (keys %$over) {
        if (defined $over->{$k}) { $base->{$k} = $over->{$k} }
        else                     { delete $base->{$k} }
    }
    return $base;
}

my %DIGEST = (RS256 => 'sha256', RS384 => 'sha384', RS512 => 'sha512',
              PS256 => 'sha256');

sub token {
    my (%o) = @_;
    my $dir = defined $o{dir} ? $o{dir} : $LAST_DIR;
    my $alg = defined $o{alg} ? $o{alg} : 'RS256';
    my $version = defined $o{version} ? $o{version} : '1.0';
    croak "token: version must be '1.0' or '2.0'"
        unless $version eq '1.0' || $version eq '2.0';

    my $key = defined $o{key} ? $o{key} : ($alg eq 'ES256' ? 'ec' : 'key1');
    my $kid = exists $o{kid} ? $o{kid}
            : exists $KID{$key} ? $KID{$key} : $key;

    my %hdr = (typ => 'JWT', alg => $alg);
    if (defined $kid) { $hdr{kid} = $kid; $hdr{x5t} = $kid; }
    _merge(\%hdr, $o{header});

    my $claims = _merge(default_claims(now => $o{now}, version => $version),
                        $o{claims});

    my $hjson = defined $o{raw_header}  ? $o{raw_header}  : $JSON->encode(\%hdr);
    my $pjson = defined $o{raw_payload} ? $o{raw_payload} : $JSON->encode($claims);
    my $input = b64url($hjson) . '.' . b64url($pjson);

    my $sig;
    if ($alg eq 'none') {
        $sig = '';
    } elsif ($alg eq 'HS256') {
        my $secret = $o{hmac_secret};
        unless (defined $secret) {
            croak "token: HS256 needs dir (call setup first) or hmac_secret"
                unless defined $dir;
            $secret = _slurp("$dir/key1.pub.pem");
        }
        $sig = hmac_sha256($input, $secret);
    } else {
        croak "token: no key directory (call setup() or pass dir)"
            unless defined $dir;
        my $pem = $key =~ m{/} ? $key : "$dir/$key.pem";
        croak "token: key file $pem not found" unless -f $pem;
        if ($alg eq 'ES256') {
            $sig = ecdsa_der_to_raw(_sign_openssl($pem, 'sha256', $input), 32);
        } elsif ($alg eq 'PS256') {
            $sig = _sign_openssl($pem, 'sha256', $input,
                                 'rsa_padding_mode:pss', 'rsa_pss_saltlen:32');
        } elsif ($DIGEST{$alg}) {
            $sig = _sign_openssl($pem, $DIGEST{$alg}, $input);
        } else {
            croak "token: unsupported alg '$alg'";
        }
    }

    if (my $t = $o{tamper}) {
        if ($t eq 'signature') {
            croak "token: cannot tamper with an empty signature" if $sig eq '';
            substr($sig, length($sig) >> 1, 1) ^= "\x01";
        } elsif ($t eq 'payload') {
            my $obj = eval { JSON::PP->new->decode($pjson) };
            my $new = ref $obj eq 'HASH'
                ? do { $obj->{sub} = 'attacker'; $JSON->encode($obj) }
                : "$pjson ";
            $new = "$pjson " if $new eq $pjson;
            $input = b64url($hjson) . '.' . b64url($new);
        } else {
            croak "token: unknown tamper mode '$t'";
        }
    }

    return $input . '.' . b64url($sig);
}

# decode($jwt) -> ($header_hashref, $claims_hashref, $signature_bytes)
# (hashrefs are undef if the segment is not valid JSON).
sub decode {
    my ($jwt) = @_;
    my ($h, $p, $s) = split /\./, $jwt, -1;
    my $dec = sub {
        my $j = b64url_decode(shift);
        my $v = eval { JSON::PP->new->decode($j) };
        return $v;
    };
    return ($dec->($h), $dec->($p), b64url_decode($s));
}

1;

__END__

=head1 NAME

AcsTest::Entra - test keys, JWKS files and Entra ID bearer tokens

=head1 FUNCTIONS

=over

=item setup($dir)

mkdir -p $dir and create, once (concurrency-safe), C<key1.pem>/C<key1.pub.pem>,
C<key2.pem>/C<key2.pub.pem> (RSA-2048, kids C<test-kid-1>, C<test-kid-2>),
C<ec.pem>/C<ec.pub.pem> (P-256, kid C<test-kid-ec>), C<jwks.json> (key1+key2),
C<jwks-key1only.json>, C<jwks-empty.json>, C<jwks-ec.json> and
C<hs256-secret.pem> (= text of key1.pub.pem).  Returns a hashref with keys
dir key1 key1_pub key2 key2_pub ec ec_pub jwks jwks_key1only jwks_empty
jwks_ec hs256_secret tenant audience.  Remembers $dir as the default for
token().

=item token(%opts)

Compact JWT.  Options: dir, alg (RS256 default; RS384 RS512 PS256 ES256 HS256
none), key (key1|key2|ec or a path; default key1, or ec for ES256), kid
(default from key; undef removes kid and x5t; the kid never selects the key),
version ('1.0'|'2.0'), claims / header (hashrefs merged over defaults, undef
value deletes), hmac_secret (HS256; default key1.pub.pem text), tamper
('signature'|'payload'), raw_header / raw_payload (verbatim JSON text), now
(epoch used for iat/nbf/exp).

=item decode($jwt), b64url($bytes), b64url_decode($str), default_claims(%o)

=back

=cut
